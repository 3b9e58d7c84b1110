"""A fake ``live.kavkom.com``: the token API and the ``/calls`` WebSocket, on one real port.

Reproduces what *Kavkom API Documentation*
(https://help.kavkom.com/en/api-integration/kavkom-api/) says:

- "Access tokens for the WebSocket": ``POST /api/auth/acquire-access`` with
  ``Authorization: Bearer <refresh-token>`` answers ``{"token", "expiresAt"}`` (an ISO date);
- "Real-time call events - WebSocket": ``/calls?t=<access-token>&ext=1001[,1002]``; 406
  "&t parameter is missing" / "&ext parameter is missing"; 401 "Invalid token" for an
  invalid or expired token; ``ping`` with ``data: {sentStamp, expiresInSec}`` answered by a
  ``pong`` of the same structure; ``call`` messages ``{"event": "call", "data": {...}}``.

Constructed where the documentation is silent: a refused refresh token gets 401 with
``{"message": "Invalid refresh token"}``; a connection whose token expires is closed by the
server (1008 "token expired"), so a client that does not renew in time loses it; tokens are
``acc-<hex>``.

The token API is plain HTTP and the WebSocket is ``websockets.serve``, which cannot read a
request body; a small front on the public port hands POSTs to the token API and pipes every
other connection to the WebSocket server, so both share one origin as on live.kavkom.com
(and ``KAVKOM_LIVE_URL`` points at ``url``). Everything runs on one event loop in a thread.

Tests script it with ``send``, ``ping``, ``drop``, ``refuse_next``, ``revoke``,
``token_lifetime_s`` and ``clock_offset_s``, and read ``acquire_requests``, ``handshakes``,
``pongs``, ``connections()`` and ``issued``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

ACQUIRE_PATH = "/api/auth/acquire-access"
REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


@dataclass
class _Conn:
    ws: ServerConnection
    exts: list[str]
    token: str
    opened_at: float = field(default_factory=time.time)
    open: bool = True
    closed_by_server: bool = False
    close_code: int | None = None


class FakeKavkomLive:
    """``with FakeKavkomLive(refresh_token=...) as fake:``; ``fake.url`` is KAVKOM_LIVE_URL."""

    def __init__(self, *, refresh_token: str, token_lifetime_s: float = 3600.0):
        self.refresh_token = refresh_token
        self.token_lifetime_s = token_lifetime_s
        # How far the server's clock (its Date header and expiresAt) is from ours.
        self.clock_offset_s = 0.0
        self.acquire_requests: list[dict[str, Any]] = []
        self.handshakes: list[dict[str, Any]] = []
        self.pongs: list[dict[str, Any]] = []
        self.issued: list[str] = []
        self._tokens: dict[str, dict[str, Any]] = {}
        self._conns: list[_Conn] = []
        self._refusals: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._ws_server: Server | None = None
        self._front: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._timers: list[asyncio.TimerHandle] = []

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> FakeKavkomLive:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        assert self._front is not None
        port = self._front.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self._ws_server = await serve(
            self._handler, "127.0.0.1", 0, process_request=self._check, ping_interval=None
        )
        self._front = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _shutdown(self) -> None:
        for timer in self._timers:
            timer.cancel()
        assert self._front is not None and self._ws_server is not None
        self._front.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._ws_server.close()
        await self._ws_server.wait_closed()
        await self._front.wait_closed()

    # -- what tests script -------------------------------------------------------------------
    def refuse_next(self, status: int, text: str) -> None:
        """The next WebSocket handshake is answered `status` with `text` as the body."""
        with self._lock:
            self._refusals.append((status, text))

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens[token]["revoked"] = True

    def send(self, ext: str, message: dict[str, Any] | str) -> int:
        """Send a message to every open connection listening to `ext`; how many got it."""
        text = message if isinstance(message, str) else json.dumps(message)
        return self._call(self._send(ext, text))

    def ping(self, ext: str) -> dict[str, Any]:
        """Send the documented heartbeat; returns its `data`, which the pong must repeat."""
        data = {"sentStamp": int(time.time() * 1000), "expiresInSec": 60}
        self.send(ext, {"event": "ping", "data": data})
        return data

    def drop(self, ext: str) -> int:
        """Cut every connection of `ext` without a closing handshake, as a network drop."""
        return self._call(self._drop(ext))

    # -- what tests read --------------------------------------------------------------------
    def connections(
        self, ext: str | None = None, *, open_only: bool = True
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "exts": c.exts,
                    "token": c.token,
                    "open": c.open,
                    "closed_by_server": c.closed_by_server,
                    "close_code": c.close_code,
                    "opened_at": c.opened_at,
                }
                for c in self._conns
                if (ext is None or ext in c.exts) and (c.open or not open_only)
            ]

    # -- the token API ------------------------------------------------------------------------
    def _acquire(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload = None
        auth = headers.get("authorization", "")
        ok = auth == f"Bearer {self.refresh_token}"
        with self._lock:
            self.acquire_requests.append({"authorized": ok, "json": payload, "at": time.time()})
        if not ok:
            return 401, {"message": "Invalid refresh token"}
        token = "acc-" + secrets.token_hex(12)
        expires = time.time() + self.token_lifetime_s
        with self._lock:
            self._tokens[token] = {"expires": expires, "revoked": False}
            self.issued.append(token)
        self._timers.append(self._loop.call_later(self.token_lifetime_s, self._expire, token))
        shown = expires + self.clock_offset_s
        iso = datetime.fromtimestamp(shown, UTC).isoformat(timespec="milliseconds")
        return 200, {"token": token, "expiresAt": iso.replace("+00:00", "Z")}

    def _expire(self, token: str) -> None:
        for conn in self._conns:
            if conn.token == token and conn.open:
                conn.closed_by_server = True
                self._loop.create_task(conn.ws.close(1008, "token expired"))

    def _valid(self, token: str) -> bool:
        with self._lock:
            state = self._tokens.get(token)
        return state is not None and not state["revoked"] and state["expires"] > time.time()

    # -- the WebSocket ------------------------------------------------------------------------
    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        token = (query.get("t") or [""])[0]
        ext = (query.get("ext") or [""])[0]
        with self._lock:
            refusal = self._refusals.pop(0) if self._refusals else None
        if parts.path != "/calls":
            status, text = 404, "Not found"
        elif refusal is not None:
            status, text = refusal
        elif not token:
            status, text = 406, "&t parameter is missing"
        elif not ext:
            status, text = 406, "&ext parameter is missing"
        elif not self._valid(token):
            status, text = 401, "Invalid token"
        else:
            status, text = 101, ""
        with self._lock:
            self.handshakes.append({"ext": ext, "token": token, "status": status})
        return None if status == 101 else connection.respond(status, text)

    async def _handler(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)  # type: ignore[union-attr]
        conn = _Conn(ws, query["ext"][0].split(","), query["t"][0])
        with self._lock:
            self._conns.append(conn)
        try:
            async for message in ws:
                try:
                    data = json.loads(message)
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("event") == "pong":
                    with self._lock:
                        self.pongs.append({"exts": conn.exts, "message": data})
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                conn.open = False
                conn.close_code = ws.close_code

    async def _send(self, ext: str, text: str) -> int:
        sent = 0
        for conn in [c for c in self._conns if c.open and ext in c.exts]:
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(text)
                sent += 1
        return sent

    async def _drop(self, ext: str) -> int:
        targets = [c for c in self._conns if c.open and ext in c.exts]
        for conn in targets:
            conn.closed_by_server = True
            conn.ws.transport.abort()
        return len(targets)

    # -- the front: token API on POST, everything else piped to the WebSocket server --------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._pipes.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            if method != "POST":
                await self._pipe_to_websocket(head, reader, writer)
                return
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            if urlsplit(target).path == ACQUIRE_PATH:
                status, payload = self._acquire(headers, body)
            else:
                status, payload = 404, {"message": "Not found"}
            data = json.dumps(payload).encode()
            date = email.utils.formatdate(time.time() + self.clock_offset_s, usegmt=True)
            writer.write(
                f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nDate: {date}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except ValueError:  # not HTTP
            pass
        finally:
            self._pipes.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _pipe_to_websocket(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self._ws_server is not None
        port = self._ws_server.sockets[0].getsockname()[1]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        self._pipes.add(up_writer)
        up_writer.write(head)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            # One side ended: end the other too (after what was already sent, unless the
            # side broke), so a drop reaches the client as a TCP close without a close frame.
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except ConnectionError:
                dst.transport.abort()
            else:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._pipes.discard(up_writer)
            up_writer.close()
