"""Open agent pages on one event-loop thread per web process, not a thread each.

An agent page keeps its ``/agent/stream`` response open all day. Under gunicorn's gthread
workers each such response used to hold a request thread, so a process served
WEB_THREADS - WEBHOOK_THREADS pages (24 by default) and opened a Redis connection per
page. Now the request thread only authenticates the page, answers its replay (the cards
still ringing, or what came after ``Last-Event-ID``) and then hands the connection to
this module's hub, one per process:

- one thread (``_loop``) holds every handed-over socket, non-blocking, in a ``selectors``
  selector, and reads every watched agent's Redis stream with ONE blocking ``XREAD`` over
  all their keys (one Redis connection per process, not one per page). A card is written
  to each open page of its agent whose last event id is older; heartbeats go every
  HEARTBEAT_S; a page that closes is noticed at once (EOF on its socket) and frees its slot;
- a second thread (``_housekeeping``) does what may wait on the database or Redis for
  longer: refreshes the pages' presence (`agent_page.open_pages`) and checks each page's
  token every HEARTBEAT_S (a revoked or expired link gets an ``event: revoked`` and its
  stream closes), so the loop never waits on PostgreSQL.

Requests (webhooks, the pages themselves, the console) keep gthread: nothing else
changes, no monkey-patching. Considered and not chosen: gunicorn's gevent worker. It
would keep the code as is, but every thread of the process would become a greenlet:
psycopg 3's waits, the SQLAlchemy pool, kombu's publishing, the publisher and metrics
threads would all have to be right under monkey-patching, a webhook's CPU (mapping,
logging: about 1.5 ms) would stall every stream, and each page would still hold its
own Redis connection, which a hosted Redis's connection limit does not allow at 1,000
pages. An ASGI server would mean rewriting the app. The hub is one module.

The hand-over (`HandOff`) needs gunicorn (``gunicorn.socket`` in the WSGI environ) over
plain HTTP/1.x; elsewhere (Flask's test client, werkzeug's server in the tests) the stream
is served the old way, in its request thread. gunicorn writes the response head and the
replay (chunked, as before, with ``Connection: close``); the hub then writes the following
chunks on its own duplicate of the socket, and the descriptor gunicorn still holds is
swapped for a dead one (``os.dup2``), so that gunicorn's close (which shuts the socket
down first) cannot cut the page off. gunicorn's access log shows the stream's request
once, when it is handed over.

A process holds at most `Hub.capacity` pages (10,000, less if the open-file limit is
lower: it is raised to its hard limit when the hub starts). Measured on one process
(bench/agent_pages.py): 1,000 open pages cost about 4.4 KiB each (a thread each cost
about 150 KiB), webhooks kept their p99, and a card takes a few ms from Redis to its
page.

On shutdown (`SHUTTING_DOWN`, also `agent_page.SHUTTING_DOWN`) every page's stream ends
within READ_BLOCK_S, cleanly (the last chunk; the worker waits for it as it exits, see
gunicorn_conf.worker_exit), and the pages reconnect by themselves; a page whose process
died reconnects too, and resumes with ``Last-Event-ID``. If Redis is lost, pages stay
open (heartbeats go on) and get what they missed once it answers again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Response

from worker.core.agent_links import refusal
from worker.core.redis_conn import redis_url

log = logging.getLogger("callhook.agent")

HEARTBEAT_S = 15
READ_BLOCK_S = 1
MAX_PAGES = 10_000
# Descriptors kept for everything else of the process (database and Redis pools, files).
RESERVED_FDS = 256
# A page that does not read what it is sent (a stalled browser) is dropped past this.
MAX_BUFFERED = 256 * 1024
PRESENCE_TTL_S = HEARTBEAT_S * 3
# Set when this web process is stopping (gunicorn_conf.py chains it to the worker's
# signals): open streams end within READ_BLOCK_S, so gunicorn's graceful shutdown does
# not wait its whole timeout on pages that would never end by themselves. The pages
# reconnect by themselves, to another process or to this server once restarted.
SHUTTING_DOWN = threading.Event()


def presence_key(email: str) -> str:
    return f"callhook:agent_pages:{email.lower()}"


def stream_id(raw: str) -> tuple[int, int]:
    """A Redis stream id ("ms-seq" or "ms") as a comparable pair; (0, 0) for anything else."""
    ms, _, seq = raw.partition("-")
    if not ms.isdigit() or not (seq or "0").isdigit():
        return 0, 0
    return int(ms), int(seq or 0)


def can_hand_off(environ: dict[str, Any]) -> bool:
    """Whether this request's connection can be handed to the hub: gunicorn, plain
    HTTP/1.x (not TLS terminated in gunicorn, not HTTP/2)."""
    sock = environ.get("gunicorn.socket")
    return (
        isinstance(sock, socket.socket)
        and not isinstance(sock, ssl.SSLSocket)
        and sock.type == socket.SOCK_STREAM
        and str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn")
        and environ.get("REQUEST_METHOD") == "GET"
        and environ.get("HTTP_VERSION") != "2"
        and str(environ.get("SERVER_PROTOCOL", "")).startswith("HTTP/1.")
    )


class _Page:
    """One open agent page, as the hub holds it."""

    __slots__ = (
        "at",
        "checked",
        "chunked",
        "closed",
        "email",
        "key",
        "marked",
        "on_close",
        "out",
        "page_id",
        "position",
        "sock",
        "token",
        "wrote",
    )  # fmt: skip

    def __init__(
        self, sock: socket.socket, email: str, key: str, token: str, page_id: str,
        position: str, chunked: bool, on_close: Callable[[], None],
    ) -> None:  # fmt: skip
        now = time.monotonic()
        self.sock = sock
        self.email = email
        self.key = key
        self.token = token
        self.page_id = page_id
        self.at = stream_id(position)
        self.position = f"{self.at[0]}-{self.at[1]}"
        self.chunked = chunked
        self.out = bytearray()
        self.wrote = now
        self.marked = now
        self.checked = now
        self.closed = False
        self.on_close = on_close


class Hub:
    """This process's open agent pages: one loop thread, one housekeeping thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.capacity = _raise_fd_limit()
        self._lock = threading.Lock()
        self._registry: dict[str, _Page] = {}  # page id → page; any thread, under _lock
        self._incoming: deque[_Page] = deque()
        self._revoked: deque[tuple[_Page, str]] = deque()
        # Only the loop thread touches these.
        self._selector = selectors.DefaultSelector()
        self._by_key: dict[str, set[_Page]] = {}
        self._gone: list[_Page] = []
        self._wake_key = f"callhook:agent_streams:wake:{uuid.uuid4().hex}"
        self._wake_at = "0-0"
        self._client = redis.Redis.from_url(
            redis_url(), socket_timeout=READ_BLOCK_S + 10, socket_connect_timeout=5,
            decode_responses=True,
        )  # fmt: skip
        for target, name in ((self._loop, "agent-streams"), (self._housekeeping, "agent-pages")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def open_count(self) -> int:
        with self._lock:
            return len(self._registry)

    # -- any thread ---------------------------------------------------------------------

    def adopt(self, page: _Page, client: redis.Redis) -> None:
        """Take `page` (its socket already answered up to its replay); wake the loop's
        XREAD so that its agent's stream is read from now on, not a second later."""
        with self._lock:
            self._registry[page.page_id] = page
            self._incoming.append(page)
        self.wake(client)

    def wake(self, client: redis.Redis) -> None:
        """End the loop's blocking XREAD now (it reads a key of its own too)."""
        try:
            pipe = client.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, 600)
            pipe.execute()
        except redis.RedisError:
            pass  # the loop's next read (within READ_BLOCK_S) takes the page anyway

    # -- the loop thread ----------------------------------------------------------------

    def _loop(self) -> None:
        failing = False
        while True:
            try:
                self._admit()
                if SHUTTING_DOWN.is_set():
                    for page in [p for pages in self._by_key.values() for p in pages]:
                        self._close(page, finish=True)
                    self._forget_gone()
                    time.sleep(READ_BLOCK_S / 4)
                    continue
                self._read()
                if failing:
                    log.info("agent.streams_redis_back")
                failing = False
            except redis.RedisError as exc:
                # Pages stay open: they keep their positions, and get what they missed
                # once Redis answers again.
                if not failing:
                    log.warning("agent.streams_redis_lost error=%s", type(exc).__name__)
                failing = True
                time.sleep(READ_BLOCK_S)
            except Exception:  # never let the thread die: every page would go silent
                log.exception("agent.streams_loop_error")
                time.sleep(READ_BLOCK_S)
            try:
                self._sockets()
                self._timers()
                self._forget_gone()
            except Exception:
                log.exception("agent.streams_loop_error")

    def _admit(self) -> None:
        while True:
            with self._lock:
                if not self._incoming:
                    return
                page = self._incoming.popleft()
            self._by_key.setdefault(page.key, set()).add(page)
            self._selector.register(page.sock, selectors.EVENT_READ, page)

    def _read(self) -> None:
        streams: dict[str, str] = {self._wake_key: self._wake_at}
        for key, pages in self._by_key.items():
            streams[key] = min((p.position for p in pages), key=stream_id)
        # redis-py types XREAD's streams as a dict of bytes keys; text keys work the same.
        found: Any = self._client.xread(streams, block=READ_BLOCK_S * 1000, count=50)  # type: ignore[arg-type]
        for key, entries in found or []:
            if key == self._wake_key:
                self._wake_at = entries[-1][0]
                continue
            for page in list(self._by_key.get(key, ())):
                for entry_id, fields in entries:
                    at = stream_id(entry_id)
                    if at <= page.at or page.closed:
                        continue
                    page.at, page.position = at, entry_id
                    if "card" in fields:  # anything else in the stream is not the page's
                        self._send(page, f"id: {entry_id}\nevent: card\ndata: {fields['card']}\n\n")

    def _send(self, page: _Page, text: str) -> None:
        data = text.encode()
        if page.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        page.wrote = time.monotonic()
        if page.out:
            page.out += data
            if len(page.out) > MAX_BUFFERED:
                log.warning("agent.stream_stalled agent=%s", page.email)
                self._close(page)
            return
        try:
            sent = page.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(page)
            return
        if sent < len(data):
            page.out += data[sent:]
            self._selector.modify(page.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, page)

    def _flush(self, page: _Page) -> None:
        try:
            sent = page.sock.send(page.out)
        except BlockingIOError:
            return
        except OSError:
            self._close(page)
            return
        del page.out[:sent]
        if not page.out:
            self._selector.modify(page.sock, selectors.EVENT_READ, page)

    def _sockets(self) -> None:
        for key, mask in self._selector.select(0):
            page: _Page = key.data
            if mask & selectors.EVENT_READ and not page.closed:
                try:
                    data = page.sock.recv(4096)
                except BlockingIOError:
                    data = b"-"
                except OSError:
                    data = b""
                if not data:  # the page closed (or its connection died)
                    self._close(page)
                    continue
            if mask & selectors.EVENT_WRITE and not page.closed:
                self._flush(page)

    def _timers(self) -> None:
        now = time.monotonic()
        for pages in list(self._by_key.values()):
            for page in list(pages):
                if now - page.wrote >= HEARTBEAT_S:
                    self._send(page, ": heartbeat\n\n")
        while True:
            with self._lock:
                if not self._revoked:
                    return
                page, why = self._revoked.popleft()
            if not page.closed:
                self._send(page, f"event: revoked\ndata: {json.dumps({'reason': why})}\n\n")
                self._close(page, finish=True)

    def _close(self, page: _Page, finish: bool = False) -> None:
        """Close a page's stream; `finish`: end it cleanly first (the last chunk), so the
        page reads a finished response rather than a cut one."""
        if page.closed:
            return
        page.closed = True
        if finish and page.chunked and not page.out:
            with contextlib.suppress(OSError):
                page.sock.send(b"0\r\n\r\n")
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(page.sock)
        page.sock.close()
        pages = self._by_key.get(page.key)
        if pages is not None:
            pages.discard(page)
            if not pages:
                del self._by_key[page.key]
        with self._lock:
            self._registry.pop(page.page_id, None)
        self._gone.append(page)
        try:
            page.on_close()
        except Exception:
            log.exception("agent.stream_release_failed")

    def _forget_gone(self) -> None:
        """Closed pages leave the presence sets (one round trip for all of them)."""
        if not self._gone:
            return
        gone, self._gone = self._gone, []
        try:
            pipe = self._client.pipeline(transaction=False)
            for page in gone:
                pipe.zrem(presence_key(page.email), page.page_id)
            pipe.execute()
        except redis.RedisError:
            pass  # the entries expire by themselves (PRESENCE_TTL_S)

    # -- the housekeeping thread --------------------------------------------------------

    def _housekeeping(self) -> None:
        client = redis.Redis.from_url(
            redis_url(), socket_timeout=10, socket_connect_timeout=5, decode_responses=True
        )
        while True:
            time.sleep(1)
            try:
                self._keep_house(client)
            except Exception as exc:
                log.warning("agent.pages_housekeeping_failed error=%s", type(exc).__name__)

    def _keep_house(self, client: redis.Redis) -> None:
        now = time.monotonic()
        with self._lock:
            pages = list(self._registry.values())
        due = [p for p in pages if now - p.marked >= HEARTBEAT_S and not p.closed]
        if due:
            pipe = client.pipeline(transaction=False)
            until = time.time() + PRESENCE_TTL_S
            for page in due:
                key = presence_key(page.email)
                pipe.zadd(key, {page.page_id: until})
                pipe.zremrangebyscore(key, "-inf", time.time())
                pipe.expire(key, int(PRESENCE_TTL_S) + 1)
                page.marked = now
            pipe.execute()
        # Each token once, however many pages hold it; a revoked or expired one closes them.
        verdicts: dict[str, str | None] = {}
        for page in pages:
            if page.closed or now - page.checked < HEARTBEAT_S:
                continue
            if page.token not in verdicts:
                verdicts[page.token] = refusal(page.token)
            page.checked = now
            why = verdicts[page.token]
            if why is not None:
                with self._lock:
                    self._revoked.append((page, why))


_hub: Hub | None = None
_hub_lock = threading.Lock()


def hub() -> Hub:
    """This process's hub, started on first use (in the worker, after gunicorn's fork)."""
    global _hub
    with _hub_lock:
        if _hub is None or _hub.pid != os.getpid():
            _hub = Hub()
        return _hub


def _raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; the pages it allows."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else MAX_PAGES + RESERVED_FDS
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    except (ImportError, ValueError, OSError):
        return MAX_PAGES
    if soft == resource.RLIM_INFINITY:
        return MAX_PAGES
    return max(1, min(MAX_PAGES, soft - RESERVED_FDS))


def stop(timeout: float) -> None:
    """End every stream of this process now, cleanly, and wait (at most `timeout` s) until
    they are: called as the worker exits (gunicorn_conf.worker_exit), whose end would
    otherwise cut the pages' connections mid-response."""
    SHUTTING_DOWN.set()
    current = _hub
    if current is None or current.pid != os.getpid():
        return
    current.wake(request_client())
    deadline = time.monotonic() + timeout
    while current.open_count() and time.monotonic() < deadline:
        time.sleep(0.02)


_request_client: tuple[int, redis.Redis] | None = None


def request_client() -> redis.Redis:
    """A decoding Redis client for the request threads' replays (shared pool)."""
    global _request_client
    if _request_client is None or _request_client[0] != os.getpid():
        client = redis.Redis.from_url(
            redis_url(), socket_timeout=5, socket_connect_timeout=5, decode_responses=True
        )
        _request_client = (os.getpid(), client)
    return _request_client[1]


def _swap_out(sock: socket.socket) -> None:
    """Point gunicorn's descriptor at a dead socket (its peer closed): whatever gunicorn
    then does with it (shut down, drain, close) leaves the page's connection alone."""
    dead, peer = socket.socketpair()
    peer.close()
    os.dup2(dead.fileno(), sock.fileno())
    dead.close()


class HandOff(Response):
    """The stream's response under gunicorn: its head and replay are written by gunicorn
    (with the headers every response of the app gets), the rest by the hub."""

    def __init__(
        self, first: str, email: str, key: str, token: str, page_id: str, position: str,
        on_close: Callable[[], None], **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(b"", **kwargs)
        self.handed: tuple[str, str, str, str, str, str] = (
            first,
            email,
            key,
            token,
            page_id,
            position,
        )
        self.release = on_close

    # A WSGI app, not the Response it subclasses for Flask's sake: another signature.
    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:  # type: ignore[override]
        first, email, key, token, page_id, position = self.handed
        _, status, headers = self.get_wsgi_response(environ)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        write = start_response(status, headers)
        answer: Any = getattr(write, "__self__", None)
        sock = environ.get("gunicorn.socket")
        if not (hasattr(answer, "force_close") and hasattr(answer, "chunked") and sock):
            # Not the gunicorn this was written for: the page gets its replay and
            # reconnects (a 3 s retry) rather than a stream that never comes.
            log.error("agent.stream_handoff_unavailable server=%s", environ.get("SERVER_SOFTWARE"))
            self.release()
            return [first.encode()]
        answer.force_close()  # "Connection: close": the connection is the hub's from now on
        try:
            write(first.encode())
            chunked = bool(answer.chunked)
            answer.chunked = False  # gunicorn must not write the last chunk: the hub will
            mine = socket.socket(fileno=os.dup(sock.fileno()))
            _swap_out(sock)
        except OSError:
            self.release()
            raise
        mine.setblocking(False)
        page = _Page(mine, email, key, token, page_id, position, chunked, self.release)
        hub().adopt(page, request_client())
        return []
