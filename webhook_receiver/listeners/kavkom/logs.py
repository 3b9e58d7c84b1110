"""The listener's loggers, and the filter that keeps Kavkom's tokens out of them.

The WebSocket URL carries the access token (``?t=``), and the ``websockets`` library logs
the handshake, URL included, at DEBUG on our ``wire`` logger. Rather than trust every log
call to leave tokens out, both loggers pass every record through one filter that masks
``t=`` values and each token the listener holds (the refresh token, every access token).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("callhook.listener.kavkom")
# The websockets library logs the handshake (with the URL) at DEBUG on this logger.
wire_log = logging.getLogger("callhook.listener.kavkom.wire")

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


redactor = _RedactTokens()
log.addFilter(redactor)
wire_log.addFilter(redactor)


def server_text(body: Any, secrets: Iterable[str]) -> str:
    """What Kavkom said (its ``message`` or ``error``), on one short line, for a log."""
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


def call_id(payload: dict[str, Any]) -> str:
    """The call a message is about (``data.callUuid``), for the log line that reports it."""
    data = payload.get("data")
    value = data.get("callUuid") if isinstance(data, dict) else payload.get("callUuid")
    return str(value) if value else "-"
