"""Frames in, deliveries out: reading a connection and handing calls to the intake.

Kavkom's messages are ``{"event", "data"}``: ``call`` (a state update), ``ping`` ("the
client must return a pong with the same structure", i.e. ``{"event": "pong", "data":
<the ping's data>}``) and ``error`` (``data.message``). Readers answer pings and log
errors themselves; everything else goes, through one queue and in arrival order, to
``webhook_receiver.deliveries.intake.ingest``, exactly as the same payload posted to
``/webhooks/kavkom`` would be (mapped, stored, deduplicated, enqueued). A message that
arrives on two connections during a token change is stored once: the mapping's dedupe
key is the payload's digest.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from webhook_receiver.listeners.kavkom.backoff import Backoff
from webhook_receiver.listeners.kavkom.lifecycle import Lifecycle
from webhook_receiver.listeners.kavkom.logs import call_id, log, server_text
from webhook_receiver.mapping.payloads import BadPayload, loads

if TYPE_CHECKING:
    from webhook_receiver.mapping import PlatformMapping

# (extension, payload, raw bytes); a payload of None is the store's last item.
Message = tuple[str, Any, bytes]
LAST: Message = ("", None, b"")


async def read_messages(
    ws: ClientConnection, ext: str, queue: asyncio.Queue[Message], refresh_token: str
) -> None:
    """Read `ws` until it closes: answer pings, log errors, queue the rest."""
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
                    server_text(message_text, [refresh_token]),
                )
                continue
            # `call` messages, and anything unknown: an unknown event is stored as
            # unmapped, visible in `callhook events list`, as a webhook would be.
            await queue.put((ext, payload, raw))
    except ConnectionClosed:
        pass


async def store_messages(
    queue: asyncio.Queue[Message],
    mapping: PlatformMapping,
    lifecycle: Lifecycle,
    *,
    backoff: Backoff,
    store_retry_s: float,
) -> None:
    """Hand messages to `ingest` one at a time, in the order they arrived, until `LAST`."""
    from webhook_receiver.deliveries.intake import ingest

    while True:
        ext, payload, raw = await queue.get()
        if payload is None:
            return
        deadline = time.monotonic() + store_retry_s
        attempt = 0
        while True:
            try:
                result = await asyncio.to_thread(
                    ingest,
                    mapping,
                    payload,
                    raw=raw,
                    method="WS",
                    content_type="application/json",
                )
            except Exception as exc:  # the store's own errors become a 503 already
                log.error("listener.kavkom.ingest_failed ext=%s error=%s", ext, type(exc).__name__)
                status, key, body = 503, "listener.kavkom.ingest_failed", {}
            else:
                status, key, body = result.status, result.key, result.body
            if status != 503:
                break
            attempt += 1
            # No platform will resend a WebSocket message: keep trying for a while.
            if time.monotonic() >= deadline or lifecycle.stopped:
                log.error(
                    "listener.kavkom.message_lost ext=%s call=%s: storage unavailable",
                    ext,
                    call_id(payload),
                )
                break
            await asyncio.sleep(min(backoff.delay(attempt), 5.0))
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
                call_id(payload),
                key,
                body.get("id"),
            )
