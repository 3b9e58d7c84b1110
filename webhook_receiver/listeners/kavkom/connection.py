"""One extension's connection kept open: reconnecting after a drop, moving to new tokens.

A drop reconnects with exponential backoff and jitter (capped at a minute; a connection
that lived `stable_after_s` starts the count again); a refusal that retrying cannot fix
waits the long pause. When the token keeper announces a new token, the new connection
is opened *before* the old one is closed, and the old one lives on for `overlap_s`, so no
message falls in a gap (one that arrives on both is stored once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection

from webhook_receiver.listeners.kavkom.backoff import Backoff
from webhook_receiver.listeners.kavkom.handshake import (
    HandshakeRefused,
    Refusal,
    SocketOptions,
    Unreachable,
    judge_refusal,
    open_socket,
)
from webhook_receiver.listeners.kavkom.lifecycle import Lifecycle, settle
from webhook_receiver.listeners.kavkom.logs import log
from webhook_receiver.listeners.kavkom.messages import Message, read_messages
from webhook_receiver.listeners.kavkom.token_keeper import TokenKeeper
from webhook_receiver.listeners.kavkom.tokens import AccessToken


@dataclass
class _Connection:
    ws: ClientConnection
    ext: str
    generation: int
    expires_at: float | None
    opened_at: float
    reader: asyncio.Task[None]


class ExtensionLink:
    """`run()` keeps one connection open for `ext` until the listener stops."""

    def __init__(
        self,
        ext: str,
        *,
        lifecycle: Lifecycle,
        keeper: TokenKeeper,
        queue: asyncio.Queue[Message],
        socket: SocketOptions,
        backoff: Backoff,
        overlap_s: float,
        stable_after_s: float,
    ):
        self.ext = ext
        self.lifecycle = lifecycle
        self.keeper = keeper
        self.queue = queue
        self.socket = socket
        self.backoff = backoff
        self.overlap_s = overlap_s
        self.stable_after_s = stable_after_s
        self.retiring: set[asyncio.Task[None]] = set()  # old connections in their overlap

    async def _connect(self, token: AccessToken) -> tuple[_Connection | None, float]:
        """A live connection, or (None, how long to wait before the next try)."""
        ext = self.ext
        try:
            ws = await open_socket(self.socket, ext, token)
        except HandshakeRefused as exc:
            refusal = judge_refusal(ext, exc, token, self.socket.ws_url)
            if refusal is Refusal.NEW_TOKEN:
                self.keeper.refused(token.generation)
            lasting = refusal is Refusal.LASTING
            return None, (self.backoff.refused_s if lasting else -1.0)
        except Unreachable as exc:
            log.warning("listener.kavkom.unreachable ext=%s error=%s", ext, exc)
            return None, -1.0
        log.info("listener.kavkom.connected ext=%s generation=%s", ext, token.generation)
        reader = asyncio.create_task(
            read_messages(ws, ext, self.queue, self.socket.refresh_token),
            name=f"kavkom-read-{ext}",
        )
        conn = _Connection(ws, ext, token.generation, token.expires_at, time.monotonic(), reader)
        return conn, 0.0

    async def run(self) -> None:
        """Keep one connection open for the extension until stopped."""
        ext, pause = self.ext, self.lifecycle.pause
        attempt = 0
        conn: _Connection | None = None
        try:
            while not self.lifecycle.stopped:
                if conn is None:
                    token = await self.keeper.usable()
                    if token is None:
                        return
                    conn, wait = await self._connect(token)
                    if conn is None:
                        attempt += 1
                        delay = wait if wait > 0 else self.backoff.delay(attempt)
                        if await pause(delay):
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
                    await settle([conn.reader])
                    conn = None
                    if await pause(delay):
                        return
                    continue
                # A new token: open a connection with it, then retire the old one.
                token = self.keeper.token
                assert token is not None
                fresh, wait = await self._connect(token)
                if fresh is None:
                    # Close the old connection (its token is on the way out) and reconnect
                    # the normal way.
                    self._retire(conn, 0.0)
                    conn = None
                    attempt += 1
                    if await pause(wait if wait > 0 else self.backoff.delay(attempt)):
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
        renewed = asyncio.create_task(self.keeper.usable(newer_than=conn.generation))
        stop = asyncio.create_task(self.lifecycle.stopping.wait())
        await asyncio.wait({conn.reader, renewed, stop}, return_when=asyncio.FIRST_COMPLETED)
        outcome = (
            "stop"
            if stop.done() or self.lifecycle.stopped
            else "dropped"
            if conn.reader.done()
            else "renewed"
        )
        await settle([renewed, stop])
        return outcome

    def _retire(self, conn: _Connection, after: float) -> None:
        async def retire() -> None:
            await self.lifecycle.pause(after)
            await self._close(conn)
            log.info("listener.kavkom.retired ext=%s generation=%s", conn.ext, conn.generation)

        task = asyncio.create_task(retire())
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)

    async def _close(self, conn: _Connection) -> None:
        with contextlib.suppress(Exception):
            await conn.ws.close()
        await settle([conn.reader])
