"""Opening one ``/calls`` WebSocket, and what a refused handshake means.

Kavkom's documentation ("Real-time call events - WebSocket"):
``wss://live.kavkom.com/calls?t=<token>&ext=1001``; 406 "&t parameter is missing" /
"&ext parameter is missing"; 401 or "Invalid token" for an invalid or expired token.

A refusal is judged here, once, into what the caller does next: get a new token (401,
403), pause for long because only the operator can fix it (406, a 404, a bad URL), or
retry with the usual backoff (anything that may pass). The URL carries the token, so
it is never logged: errors name the status and Kavkom's words, tokens masked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from webhook_receiver.listeners.kavkom.logs import log, server_text, wire_log
from webhook_receiver.listeners.kavkom.tokens import AccessToken


class HandshakeRefused(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.text = text


class Unreachable(Exception):
    pass


class Refusal(Enum):
    NEW_TOKEN = "new_token"  # the access token was refused: get another, then retry
    LASTING = "lasting"  # retrying cannot fix it: a long pause
    PASSING = "passing"  # may pass: the usual backoff


@dataclass(frozen=True)
class SocketOptions:
    """How every connection is opened (the listener's settings)."""

    ws_url: str
    refresh_token: str = field(repr=False)
    open_timeout_s: float
    ping_interval_s: float | None
    close_timeout_s: float


async def open_socket(options: SocketOptions, ext: str, token: AccessToken) -> ClientConnection:
    """The open connection for `ext`, or HandshakeRefused / Unreachable."""
    url = f"{options.ws_url}?{urlencode({'t': token.value, 'ext': ext})}"
    try:
        return await connect(
            url,
            open_timeout=options.open_timeout_s,
            ping_interval=options.ping_interval_s,
            ping_timeout=options.ping_interval_s,
            close_timeout=options.close_timeout_s,
            user_agent_header="callhook",
            logger=wire_log,
        )
    except InvalidStatus as exc:
        response = exc.response
        raise HandshakeRefused(
            response.status_code,
            server_text(response.body, [token.value, options.refresh_token]),
        ) from None
    except InvalidURI:
        raise HandshakeRefused(0, "KAVKOM_LIVE_URL does not make a WebSocket URL") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise Unreachable(type(exc).__name__) from None


def judge_refusal(ext: str, exc: HandshakeRefused, token: AccessToken, ws_url: str) -> Refusal:
    """Log why the handshake was refused, and say what to do about it."""
    status, text = exc.status, exc.text
    said = f" (Kavkom: {text})" if text else ""
    if status in (401, 403):
        age = time.time() - token.obtained_at
        log.warning(
            "listener.kavkom.refused ext=%s status=%s: access token refused%s; getting a new one%s",
            ext,
            status,
            said,
            ""
            if age > 30
            else " (it was fresh: is this extension among the refresh "
            "token's authorized extensions?)",
        )
        return Refusal.NEW_TOKEN
    if status == 406:
        missing = "ext" if "ext" in text.lower() else "t" if text else "t or ext"
        cause = (
            "check KAVKOM_LISTEN_EXTENSIONS"
            if missing == "ext"
            else "the access token was empty; check KAVKOM_REFRESH_TOKEN"
        )
        log.error(
            "listener.kavkom.refused ext=%s status=406: %s parameter missing%s; %s",
            ext,
            missing,
            said,
            cause,
        )
        return Refusal.LASTING
    if status == 0 or (400 <= status < 500 and status != 429):
        log.error(
            "listener.kavkom.refused ext=%s status=%s%s: check KAVKOM_LIVE_URL (%s)",
            ext,
            status,
            said,
            ws_url,
        )
        return Refusal.LASTING
    log.warning("listener.kavkom.refused ext=%s status=%s%s", ext, status, said)
    return Refusal.PASSING
