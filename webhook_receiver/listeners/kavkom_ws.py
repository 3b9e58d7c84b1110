"""Kavkom's ``/calls`` WebSocket: call messages in, through the same intake as webhooks.

Source: Kavkom API documentation, https://help.kavkom.com/en/api-integration/kavkom-api/
(sections on the live API: tokens and the /calls WebSocket):

- "Access tokens for the WebSocket": ``POST <live>/api/auth/acquire-access`` with
  ``Authorization: Bearer <refresh-token>`` and ``{"extensions": [...], "scope": "calls",
  "application": ...}`` answers ``{"token", "expiresAt"}``; the token is short-lived.
- "Real-time call events - WebSocket": ``wss://live.kavkom.com/calls?t=<token>&ext=1001``;
  406 "&t parameter is missing" / "&ext parameter is missing"; 401 or "Invalid token" for an
  invalid or expired token. Messages are ``{"event", "data"}``: ``call`` (a state update),
  ``ping`` ("the client must return a pong with the same structure", i.e.
  ``{"event": "pong", "data": <the ping's data>}``) and ``error`` (``data.message``).

What the documentation leaves open, and what this module does about it:

- Whether an open connection survives its token's expiry is not said. The listener never
  finds out: it gets a new token ahead of ``expiresAt`` and moves every connection to it,
  opening the new connection *before* closing the old one, so no message falls in a gap.
  A message that arrives on both during the overlap is stored once: the mapping's dedupe
  key is the payload's digest, so an identical message is a duplicate.
- ``userUuid`` appears in the acquire-access example; callhook has no setting for it, so
  it is sent only when given (the refresh token already belongs to a user).
- ``verify-access`` could extend a token, but its request and answer are not documented;
  a new token from ``acquire-access`` is used instead.

Failures: a drop reconnects with exponential backoff and jitter (capped at a minute); a
refusal that retrying cannot fix (the refresh token refused, a 406, a 404) is logged once
with its cause and retried only after a long pause, so a misconfiguration never hammers
Kavkom. Tokens never reach the logs: the URL carries the access token, so it is never
logged, and a filter masks ``t=`` values and both tokens in anything logged here or by
the ``websockets`` library on our behalf.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import re
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from webhook_receiver.mapping.payloads import BadPayload, loads
from worker.core.backoff import exponential_delay
from worker.telephony.base import TransportFailure, send

if TYPE_CHECKING:
    from webhook_receiver.mapping import PlatformMapping
    from worker.core.settings import Settings

log = logging.getLogger("callhook.listener.kavkom")
# The websockets library logs the handshake (with the URL) at DEBUG on this logger.
wire_log = logging.getLogger("callhook.listener.kavkom.wire")

ACQUIRE_PATH = "/api/auth/acquire-access"
CALLS_PATH = "/calls"
_TOKEN_IN_URL = re.compile(r"([?&]t=)[^&\s\"']+")


class _RedactTokens(logging.Filter):
    """Masks the access token in URLs and any token the listener holds, in every record."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        text = _TOKEN_IN_URL.sub(r"\1[hidden]", text)
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "[hidden]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_redactor = _RedactTokens()
log.addFilter(_redactor)
wire_log.addFilter(_redactor)


# -- configuration --------------------------------------------------------------------
def live_endpoints(live_url: str) -> tuple[str, str]:
    """(the auth API's base URL, the ``/calls`` WebSocket URL) from ``KAVKOM_LIVE_URL``.

    Kavkom's documentation serves both from one host: ``https://live.kavkom.com/api/auth/...``
    and ``wss://live.kavkom.com/calls``. Either scheme may be configured.
    """
    parts = urlsplit(live_url.strip())
    scheme = {"https": "https", "wss": "https", "http": "http", "ws": "http"}.get(
        parts.scheme.lower()
    )
    if scheme is None or not parts.netloc:
        raise ValueError(
            f"KAVKOM_LIVE_URL must be an https:// (or wss://) address, not {live_url!r}"
        )
    path = parts.path.rstrip("/")
    ws_scheme = "wss" if scheme == "https" else "ws"
    return (
        urlunsplit((scheme, parts.netloc, path, "", "")),
        urlunsplit((ws_scheme, parts.netloc, path + CALLS_PATH, "", "")),
    )


def parse_extensions(text: str) -> list[str]:
    """``KAVKOM_LISTEN_EXTENSIONS`` ("1001, 1002") as a list, blanks and repeats dropped."""
    return list(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: exponential with jitter, and a long one after a refusal."""

    initial_s: float = 1.0
    cap_s: float = 60.0
    # After a refusal that retrying will not fix (refresh token refused, 406, 404).
    refused_s: float = 600.0

    def delay(self, attempt: int) -> float:
        """Attempt 1, 2, 3... waits about initial, twice that, four times... up to the cap
        (`worker.core.backoff.exponential_delay`: a fleet that lost Kavkom together does not
        come back in lockstep)."""
        return exponential_delay(attempt - 1, initial_s=self.initial_s, cap_s=self.cap_s)


# -- access tokens -------------------------------------------------------------------------
class RefreshTokenRefused(Exception):
    """Kavkom will not issue tokens for this refresh token; retrying soon will not help."""


class AccessUnavailable(Exception):
    """acquire-access failed for a reason that may pass (network, 5xx, 429)."""


@dataclass
class AccessToken:
    value: str = field(repr=False)
    expires_at: float | None  # Unix seconds; None when Kavkom gave no usable expiresAt
    generation: int
    obtained_at: float
    refused: bool = False


def parse_expiry(value: Any) -> float | None:
    """``expiresAt`` as Unix seconds. Kavkom's docs say "<ISO-date>"; epochs are read too."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e12 else float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:  # a zone-less date from Kavkom is taken as UTC
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return None


def _clock_skew(date_header: str | None) -> float:
    """Our clock minus the server's (from its ``Date`` header), when it is off by over 2 s.

    ``expiresAt`` is on Kavkom's clock; a dyno whose clock runs ahead would otherwise see
    every token as already expired and renew it over and over.
    """
    if not date_header:
        return 0.0
    try:
        # The header has whole seconds: the server's time was up to 1 s later than it says.
        # Taking the latest makes the expiry, if anything, a second early, never late.
        server_now = email.utils.parsedate_to_datetime(date_header).timestamp() + 1.0
    except (TypeError, ValueError):
        return 0.0
    skew = time.time() - server_now
    return skew if abs(skew) > 2 else 0.0


def _extension_values(extensions: Iterable[str]) -> list[int | str]:
    # the documentation's example sends extensions as numbers ([1001]); keep text for anything else.
    return [int(e) if e.isdigit() else e for e in extensions]


def _server_text(body: Any, secrets: Iterable[str]) -> str:
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", errors="replace")
    try:
        parsed = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        parsed = body
    if isinstance(parsed, dict):
        parsed = parsed.get("message") or parsed.get("error") or parsed
    text = " ".join(str(parsed or "").split())[:200]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[hidden]")
    return text


# -- the listener -------------------------------------------------------------------------
@dataclass
class _Connection:
    ws: ClientConnection
    ext: str
    generation: int
    expires_at: float | None
    opened_at: float
    reader: asyncio.Task[None]


class _HandshakeRefused(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.text = text


class _Unreachable(Exception):
    pass


class KavkomListener:
    """One connection per extension, a shared access token, every ``call`` into ``ingest``.

    ``await serve()`` runs until ``stop()`` (thread-safe) or, with ``handle_signals``,
    SIGTERM/SIGINT. Every delay is a parameter, so tests run in a second.
    """

    def __init__(
        self,
        *,
        mapping: PlatformMapping,
        refresh_token: str,
        extensions: Sequence[str],
        live_url: str = "https://live.kavkom.com",
        user_uuid: str | None = None,
        application: str = "callhook",
        backoff: Backoff | None = None,
        renew_before_s: float = 60.0,
        min_renew_s: float = 5.0,
        default_lifetime_s: float = 600.0,
        overlap_s: float = 2.0,
        stable_after_s: float = 30.0,
        store_retry_s: float = 30.0,
        http_timeouts: tuple[float, float] = (5.0, 15.0),
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        close_timeout_s: float = 5.0,
        grace_s: float = 20.0,
    ):
        self.extensions = parse_extensions(",".join(extensions))
        if not self.extensions:
            raise ValueError("no extension to listen to: set KAVKOM_LISTEN_EXTENSIONS")
        if not refresh_token.strip():
            raise ValueError("no refresh token: set KAVKOM_REFRESH_TOKEN")
        self.mapping = mapping
        self.refresh_token = refresh_token.strip()
        self.api_url, self.ws_url = live_endpoints(live_url)
        self.user_uuid = user_uuid
        self.application = application
        self.backoff = backoff or Backoff()
        self.renew_before_s = renew_before_s
        self.min_renew_s = min_renew_s
        self.default_lifetime_s = default_lifetime_s
        self.overlap_s = overlap_s
        self.stable_after_s = stable_after_s
        self.store_retry_s = store_retry_s
        self.http_timeouts = http_timeouts
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.close_timeout_s = close_timeout_s
        self.grace_s = grace_s
        _redactor.secrets.add(self.refresh_token)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._stopping: asyncio.Event | None = None
        self._token: AccessToken | None = None
        self._generation = 0
        self._token_changed: asyncio.Event | None = None
        self._renew_now: asyncio.Event | None = None
        self._queue: asyncio.Queue[tuple[str, Any, bytes]] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._http = requests.Session()
        self.failed = False  # a task crashed: the process should exit non-zero

    # -- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the listener to finish (from any thread); ``serve`` returns once it has."""
        loop = self._loop
        if loop is None:
            self._stop_requested = True
        else:
            loop.call_soon_threadsafe(self._begin_stop, None)

    def _begin_stop(self, signame: str | None) -> None:
        if self._stopping is not None and not self._stopping.is_set():
            log.info("listener.kavkom.stopping%s", f" signal={signame}" if signame else "")
            self._stopping.set()

    @property
    def _stopped(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep, waking early on stop; True when stopping."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
        return self._stopping.is_set()

    async def serve(self, *, handle_signals: bool = False) -> None:
        """Run until stopped; then close every connection and store what was received."""
        self._stopping = asyncio.Event()
        self._token_changed = asyncio.Event()
        self._renew_now = asyncio.Event()
        self._queue = asyncio.Queue(maxsize=1000)
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:
            self._stopping.set()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._begin_stop, sig.name)
        log.info(
            "listener.kavkom.starting url=%s extensions=%s",
            self.ws_url,
            ",".join(self.extensions),
        )
        keeper = asyncio.create_task(self._keep_token(), name="kavkom-token")
        store = asyncio.create_task(self._store_messages(), name="kavkom-store")
        listeners = [
            asyncio.create_task(self._listen(ext), name=f"kavkom-ext-{ext}")
            for ext in self.extensions
        ]
        stop = asyncio.create_task(self._stopping.wait())
        try:
            tasks = [stop, keeper, store, *listeners]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in (keeper, store, *listeners):
                if task.done() and not self._stopped:
                    # A bug, not a network problem (those are retried): exit non-zero so
                    # the platform restarts the process, rather than listen half-blind.
                    error = task.exception()
                    log.error(
                        "listener.kavkom.crashed task=%s error=%s",
                        task.get_name(),
                        type(error).__name__ if error else "returned",
                    )
                    self.failed = True
        finally:
            self._stopping.set()
            # Heroku allows 30 s between SIGTERM and SIGKILL: close the sockets, store what
            # was already received, and give up on whatever is left after `grace_s`.
            deadline = self._loop.time() + self.grace_s
            _, late = await asyncio.wait([keeper, *listeners], timeout=self.grace_s)
            await self._settle([stop, *late, *self._retiring])
            await self._queue.put(("", None, b""))  # the store task's last item
            with contextlib.suppress(TimeoutError):
                left = max(1.0, deadline - self._loop.time())
                await asyncio.wait_for(asyncio.shield(store), timeout=left)
            await self._settle([store])
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
            await asyncio.to_thread(self._http.close)
            log.info("listener.kavkom.stopped")

    @staticmethod
    async def _settle(tasks: Iterable[asyncio.Task[Any]]) -> None:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("listener.kavkom.task_failed error=%s", type(result).__name__)

    # -- tokens -----------------------------------------------------------------------------
    def _renewal_delay(self, token: AccessToken) -> float:
        now = time.time()
        if token.expires_at is None:
            return self.default_lifetime_s
        lifetime = max(0.0, token.expires_at - token.obtained_at)
        # A minute ahead for a long-lived token, a quarter of its life for a short one.
        lead = min(self.renew_before_s, lifetime / 4)
        return max(self.min_renew_s, token.expires_at - lead - now)

    async def _keep_token(self) -> None:
        """Hold a valid access token: get one, renew it before expiry or when refused."""
        assert self._renew_now is not None
        attempt = 0
        while not self._stopped:
            try:
                value, expires_at = await asyncio.to_thread(self._acquire)
            except RefreshTokenRefused as exc:
                attempt = 0
                log.error(
                    "listener.kavkom.token_refused %s; next try in %.0f s",
                    exc,
                    self.backoff.refused_s,
                )
                if await self._pause(self.backoff.refused_s):
                    return
                continue
            except AccessUnavailable as exc:
                attempt += 1
                delay = self.backoff.delay(attempt)
                log.warning("listener.kavkom.token_unavailable %s; retry in %.1f s", exc, delay)
                if await self._pause(delay):
                    return
                continue
            attempt = 0
            self._publish_token(value, expires_at)
            token = self._token
            assert token is not None
            delay = self._renewal_delay(token)
            log.info(
                "listener.kavkom.token_acquired generation=%s expires_at=%s renew_in=%.1fs",
                token.generation,
                (
                    datetime.fromtimestamp(expires_at, UTC).isoformat()
                    if expires_at is not None
                    else "unknown"
                ),
                delay,
            )
            renew = asyncio.create_task(self._renew_now.wait())
            stop = asyncio.create_task(self._stopping.wait())  # type: ignore[union-attr]
            await asyncio.wait({renew, stop}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            await self._settle([renew, stop])
            self._renew_now.clear()

    def _acquire(self) -> tuple[str, float | None]:
        """POST acquire-access (in a thread): (token, expiry) or a classified failure."""
        body: dict[str, Any] = {
            "extensions": _extension_values(self.extensions),
            "scope": "calls",
            "application": self.application,
        }
        if self.user_uuid:
            body["userUuid"] = self.user_uuid
        try:
            response = send(
                self._http,
                "POST",
                self.api_url + ACQUIRE_PATH,
                timeouts=self.http_timeouts,
                json=body,
                headers={
                    "Authorization": f"Bearer {self.refresh_token}",
                    "Accept": "application/json",
                },
            )
        except TransportFailure as exc:
            raise AccessUnavailable(f"acquire-access unreachable ({exc.error})") from None
        status = response.status_code
        text = _server_text(response.content, [self.refresh_token])
        if status in (401, 403):
            raise RefreshTokenRefused(
                f"refresh token refused (HTTP {status}{': ' + text if text else ''}): "
                "set KAVKOM_REFRESH_TOKEN to a valid Kavkom refresh token"
            )
        if status in (400, 404, 422):
            raise RefreshTokenRefused(
                f"acquire-access refused the request (HTTP {status}"
                f"{': ' + text if text else ''}): check KAVKOM_LISTEN_EXTENSIONS and "
                "KAVKOM_LIVE_URL"
            )
        if status != 200 and status != 201:
            raise AccessUnavailable(f"acquire-access answered HTTP {status}")
        try:
            payload = response.json()
        except ValueError:
            payload = None
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise AccessUnavailable("acquire-access answered without a token")
        _redactor.secrets.add(token)
        expires_at = parse_expiry(payload.get("expiresAt"))  # type: ignore[union-attr]
        if expires_at is not None:
            expires_at += _clock_skew(response.headers.get("Date"))
        if expires_at is None:
            log.warning(
                "listener.kavkom.token_expiry_unknown: no readable expiresAt; renewing every "
                "%.0f s",
                self.default_lifetime_s,
            )
        elif expires_at <= time.time():
            log.warning("listener.kavkom.token_expiry_past: expiresAt is already past (clock?)")
        return token, expires_at

    def _publish_token(self, value: str, expires_at: float | None) -> None:
        assert self._token_changed is not None
        self._generation += 1
        self._token = AccessToken(value, expires_at, self._generation, time.time())
        changed, self._token_changed = self._token_changed, asyncio.Event()
        changed.set()

    def _token_refused(self, generation: int) -> None:
        """The WebSocket refused this token: get another (once, whoever reports it)."""
        token = self._token
        if token is not None and token.generation == generation and not token.refused:
            token.refused = True
            assert self._renew_now is not None
            self._renew_now.set()

    async def _usable_token(self, newer_than: int = 0) -> AccessToken | None:
        """The current token once there is a usable one (newer than a given one); None on stop."""
        while not self._stopped:
            token = self._token
            if token is not None and not token.refused and token.generation > newer_than:
                return token
            assert self._token_changed is not None and self._stopping is not None
            changed = asyncio.create_task(self._token_changed.wait())
            stop = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({changed, stop}, return_when=asyncio.FIRST_COMPLETED)
            await self._settle([changed, stop])
        return None

    # -- connections ------------------------------------------------------------------------
    async def _open(self, ext: str, token: AccessToken) -> ClientConnection:
        url = f"{self.ws_url}?{urlencode({'t': token.value, 'ext': ext})}"
        try:
            return await connect(
                url,
                open_timeout=self.open_timeout_s,
                ping_interval=self.ping_interval_s,
                ping_timeout=self.ping_interval_s,
                close_timeout=self.close_timeout_s,
                user_agent_header="callhook",
                logger=wire_log,
            )
        except InvalidStatus as exc:
            response = exc.response
            raise _HandshakeRefused(
                response.status_code,
                _server_text(response.body, [token.value, self.refresh_token]),
            ) from None
        except InvalidURI:
            raise _HandshakeRefused(0, "KAVKOM_LIVE_URL does not make a WebSocket URL") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise _Unreachable(type(exc).__name__) from None

    def _refusal(self, ext: str, exc: _HandshakeRefused, token: AccessToken) -> bool:
        """Log why the handshake was refused; True when only a long pause makes sense."""
        status, text = exc.status, exc.text
        said = f" (Kavkom: {text})" if text else ""
        if status in (401, 403):
            age = time.time() - token.obtained_at
            log.warning(
                "listener.kavkom.refused ext=%s status=%s: access token refused%s; "
                "getting a new one%s",
                ext,
                status,
                said,
                ""
                if age > 30
                else " (it was fresh: is this extension among the refresh "
                "token's authorized extensions?)",
            )
            self._token_refused(token.generation)
            return False
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
            return True
        if status == 0 or (400 <= status < 500 and status != 429):
            log.error(
                "listener.kavkom.refused ext=%s status=%s%s: check KAVKOM_LIVE_URL (%s)",
                ext,
                status,
                said,
                self.ws_url,
            )
            return True
        log.warning("listener.kavkom.refused ext=%s status=%s%s", ext, status, said)
        return False

    async def _connect(self, ext: str, token: AccessToken) -> tuple[_Connection | None, float]:
        """A live connection, or (None, how long to wait before the next try)."""
        try:
            ws = await self._open(ext, token)
        except _HandshakeRefused as exc:
            lasting = self._refusal(ext, exc, token)
            return None, (self.backoff.refused_s if lasting else -1.0)
        except _Unreachable as exc:
            log.warning("listener.kavkom.unreachable ext=%s error=%s", ext, exc)
            return None, -1.0
        log.info("listener.kavkom.connected ext=%s generation=%s", ext, token.generation)
        reader = asyncio.create_task(self._read(ws, ext), name=f"kavkom-read-{ext}")
        conn = _Connection(ws, ext, token.generation, token.expires_at, time.monotonic(), reader)
        return conn, 0.0

    async def _listen(self, ext: str) -> None:
        """Keep one connection open for `ext` until stopped."""
        attempt = 0
        conn: _Connection | None = None
        try:
            while not self._stopped:
                if conn is None:
                    token = await self._usable_token()
                    if token is None:
                        return
                    conn, wait = await self._connect(ext, token)
                    if conn is None:
                        attempt += 1
                        delay = wait if wait > 0 else self.backoff.delay(attempt)
                        if await self._pause(delay):
                            return
                        continue
                outcome = await self._watch(conn)
                if outcome == "stop":
                    return
                if outcome == "dropped":
                    lived = time.monotonic() - conn.opened_at
                    attempt = 1 if lived >= self.stable_after_s else attempt + 1
                    delay = self.backoff.delay(attempt)
                    ws = conn.ws
                    log.warning(
                        "listener.kavkom.dropped ext=%s code=%s reason=%s after=%.1fs; "
                        "reconnecting in %.2f s",
                        ext,
                        ws.close_code,
                        ws.close_reason or "-",
                        lived,
                        delay,
                    )
                    await self._settle([conn.reader])
                    conn = None
                    if await self._pause(delay):
                        return
                    continue
                # A new token: open a connection with it, then retire the old one.
                token = self._token
                assert token is not None
                fresh, wait = await self._connect(ext, token)
                if fresh is None:
                    # Close the old connection (its token is on the way out) and reconnect
                    # the normal way.
                    self._retire(conn, 0.0)
                    conn = None
                    attempt += 1
                    if await self._pause(wait if wait > 0 else self.backoff.delay(attempt)):
                        return
                    continue
                self._retire(conn, self._overlap(conn))
                conn = fresh
        finally:
            if conn is not None:
                await self._close(conn)

    def _overlap(self, old: _Connection) -> float:
        """How long the old connection stays open next to the new one.

        Long enough for messages already on their way to arrive (they are stored once,
        whichever connection brings them), and never past half the old token's time left.
        """
        if old.expires_at is None:
            return self.overlap_s
        return max(0.0, min(self.overlap_s, (old.expires_at - time.time()) / 2))

    async def _watch(self, conn: _Connection) -> str:
        """Wait for the connection to drop, a newer token, or stop."""
        assert self._stopping is not None
        renewed = asyncio.create_task(self._usable_token(newer_than=conn.generation))
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({conn.reader, renewed, stop}, return_when=asyncio.FIRST_COMPLETED)
        outcome = (
            "stop"
            if stop.done() or self._stopped
            else "dropped"
            if conn.reader.done()
            else "renewed"
        )
        await self._settle([renewed, stop])
        return outcome

    def _retire(self, conn: _Connection, after: float) -> None:
        async def retire() -> None:
            await self._pause(after)
            await self._close(conn)
            log.info("listener.kavkom.retired ext=%s generation=%s", conn.ext, conn.generation)

        task = asyncio.create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close(self, conn: _Connection) -> None:
        with contextlib.suppress(Exception):
            await conn.ws.close()
        await self._settle([conn.reader])

    # -- messages -----------------------------------------------------------------------------
    async def _read(self, ws: ClientConnection, ext: str) -> None:
        assert self._queue is not None
        try:
            async for message in ws:
                raw = message.encode("utf-8") if isinstance(message, str) else bytes(message)
                try:
                    # The webhooks' bounded parser: a hostile message (nested 100k deep,
                    # a 5,000-digit number) is refused, never a crash of this reader.
                    payload = loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, BadPayload) as exc:
                    log.warning("listener.kavkom.bad_message ext=%s: %s", ext, exc)
                    continue
                if not isinstance(payload, dict):
                    log.warning("listener.kavkom.bad_message ext=%s: not an object", ext)
                    continue
                event = payload.get("event")
                if event == "ping":
                    # "The client must return a pong with the same structure" (Kavkom's docs).
                    await ws.send(json.dumps({"event": "pong", "data": payload.get("data")}))
                    continue
                if event == "pong":
                    continue
                if event == "error":
                    data = payload.get("data")
                    message_text = data.get("message") if isinstance(data, dict) else data
                    log.warning(
                        "listener.kavkom.server_error ext=%s message=%s",
                        ext,
                        _server_text(message_text, [self.refresh_token]),
                    )
                    continue
                # `call` messages, and anything unknown: an unknown event is stored as
                # unmapped, visible in `callhook events list`, as a webhook would be.
                await self._queue.put((ext, payload, raw))
        except ConnectionClosed:
            pass

    async def _store_messages(self) -> None:
        """Hand messages to `ingest` one at a time, in the order they arrived."""
        assert self._queue is not None
        from webhook_receiver.deliveries.intake import ingest

        while True:
            ext, payload, raw = await self._queue.get()
            if payload is None:
                return
            deadline = time.monotonic() + self.store_retry_s
            attempt = 0
            while True:
                try:
                    result = await asyncio.to_thread(
                        ingest,
                        self.mapping,
                        payload,
                        raw=raw,
                        method="WS",
                        content_type="application/json",
                    )
                except Exception as exc:  # the store's own errors become a 503 already
                    log.error(
                        "listener.kavkom.ingest_failed ext=%s error=%s", ext, type(exc).__name__
                    )
                    status, key, body = 503, "listener.kavkom.ingest_failed", {}
                else:
                    status, key, body = result.status, result.key, result.body
                if status != 503:
                    break
                attempt += 1
                # No platform will resend a WebSocket message: keep trying for a while.
                if time.monotonic() >= deadline or self._stopped:
                    log.error(
                        "listener.kavkom.message_lost ext=%s call=%s: storage unavailable",
                        ext,
                        _call_id(payload),
                    )
                    break
                await asyncio.sleep(min(self.backoff.delay(attempt), 5.0))
            if body.get("status") == "unmapped" or status == 422:
                log.warning(
                    "listener.kavkom.unmapped ext=%s id=%s reason=%s",
                    ext,
                    body.get("id"),
                    body.get("reason"),
                )
            elif status != 503:
                log.info(
                    "listener.kavkom.message ext=%s event=%s call=%s result=%s id=%s",
                    ext,
                    payload.get("event"),
                    _call_id(payload),
                    key,
                    body.get("id"),
                )


def _call_id(payload: dict[str, Any]) -> str:
    data = payload.get("data")
    value = data.get("callUuid") if isinstance(data, dict) else payload.get("callUuid")
    return str(value) if value else "-"


def listener_from_settings(settings: Settings, **options: Any) -> KavkomListener:
    """The listener the environment describes (mapping, tokens, URL, extensions)."""
    from webhook_receiver.mapping import load_mappings

    mapping = load_mappings(settings.mappings_dir).platforms.get("kavkom")
    if mapping is None:
        raise ValueError(f"no kavkom mapping in {settings.mappings_dir}")
    refresh = settings.kavkom_refresh_token
    return KavkomListener(
        mapping=mapping,
        refresh_token=refresh.get_secret_value() if refresh is not None else "",
        extensions=parse_extensions(settings.kavkom_listen_extensions),
        live_url=settings.kavkom_live_url,
        **options,
    )


def run(settings: Settings, **options: Any) -> None:
    """The ``listener`` process: listen until SIGTERM (Heroku's stop), then exit cleanly."""
    from worker.tasks.celery_app import configure as configure_celery

    listener = listener_from_settings(settings, **options)
    configure_celery()
    asyncio.run(listener.serve(handle_signals=True))
    if listener.failed:
        raise SystemExit(1)
