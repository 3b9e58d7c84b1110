"""Agent pages under the Procfile's gunicorn: served by the stream hub, not a thread each.

One web process (`WEB_CONCURRENCY=1`) with 4 threads, 2 of them kept for webhooks: the
old design served 2 pages. Here it serves many more, every page of an agent gets that
agent's cards (and no other's), a page resumes after its Last-Event-ID, one agent still
holds at most AGENT_STREAMS_PER_AGENT pages and a closed page frees its slot at once, a
revoked link closes its page, webhooks are answered while the pages are open, and a
SIGTERM ends every stream cleanly within seconds.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.conftest import (
    ROOT,
    Environment,
    EventStream,
    RedisServer,
    base_env,
    free_port,
    fresh_database,
    wait_until,
)
from tests.test_procfile_deploy import procfile

HEADER = "X-Callhook-Agent"
BIN = str(Path(sys.executable).parent)  # gunicorn, as the Procfile calls it


class Web:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                procfile()["web"], shell=True, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                env={**env, "PORT": str(self.port), "PATH": BIN + os.pathsep + env.get("PATH", "")},
                start_new_session=True,
            )  # fmt: skip
        wait_until(lambda: self._ready(), timeout=60)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own: other modules' cards are not in its agents' streams."""
    server = RedisServer(tmp_path_factory.mktemp("agent-streams-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def web(
    own_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Web, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("agent-streams")
    env = base_env(fresh_database("sqlite", tmp), own_redis.url, tmp / "instance", None)
    env.update(WEB_CONCURRENCY="1", WEB_THREADS="4", WEBHOOK_THREADS="2", LOG_LEVEL="INFO")
    environment = Environment()
    environment.set(env)  # the links are issued here, in this process
    server = Web({**os.environ, **env}, tmp / "web.log")
    yield server, env
    server.stop()
    environment.restore()


def _stream(web: Web, token: str, **headers: str) -> EventStream:
    return EventStream(f"{web.url}/agent/stream", headers={HEADER: token, **headers})


def _open(web: Web, token: str, **headers: str) -> EventStream:
    """A page, once its agent has a slot again (closed pages free theirs within a second)."""
    deadline = time.monotonic() + 5
    while True:
        page = _stream(web, token, **headers)
        if page.status != 429 or time.monotonic() > deadline:
            return page
        page.close()
        time.sleep(0.1)


def _close(page: EventStream) -> None:
    """Close a page's connection. The stream says ``Connection: close``, so http.client
    keeps the socket in the response, not in the connection `EventStream.close` shuts."""
    sock = getattr(getattr(page.response.fp, "raw", None), "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    page.close()


def _card(redis_url: str, email: str, call_key: str) -> str:
    from worker.tasks.pops import stream_key

    card = {"call_key": call_key, "state": "ringing", "expires_at": "2000-01-01T00:00:00+00:00"}
    client = redis.Redis.from_url(redis_url)
    return client.xadd(stream_key(email), {"card": json.dumps(card)}).decode()


def test_many_more_pages_than_threads_each_gets_its_agents_cards(web: Any) -> None:
    from worker.core.agent_links import create_link

    server, env = web
    tokens = {email: create_link(email) for email in ("alice@example.com", "bob@example.com")}
    pages = {email: [_stream(server, t) for _ in range(4)] for email, t in tokens.items()}
    try:
        assert all(p.status == 200 for ps in pages.values() for p in ps)  # 8 pages, 4 threads
        head = pages["bob@example.com"][0].response
        assert head.getheader("Content-Type", "").startswith("text/event-stream")
        assert (head.getheader("Cache-Control"), head.getheader("Connection")) == (
            "no-store",
            "close",
        )
        # Webhooks are answered meanwhile (a bad signature: answered, not queued behind pages).
        answer = requests.post(f"{server.url}/webhooks/kavkom", json={}, timeout=5)
        assert answer.status_code in (400, 401, 403)
        entry = _card(env["REDIS_URL"], "alice@example.com", "kavkom:hub-1")
        for page in pages["alice@example.com"]:
            event = page.next_event(timeout=5)
            assert (event["id"], json.loads(event["data"])["call_key"]) == (entry, "kavkom:hub-1")
        assert all(p.nothing_within(0.3) for p in pages["bob@example.com"])
        # A page that comes back with its Last-Event-ID gets only what came after it.
        later = _card(env["REDIS_URL"], "alice@example.com", "kavkom:hub-2")
        refused = _stream(server, tokens["alice@example.com"], **{"Last-Event-ID": entry})
        assert refused.status == 429  # alice holds 4 pages already, the most allowed
        refused.close()
        _close(pages["alice@example.com"].pop())  # a closed page frees its slot at once
        resumed = _open(server, tokens["alice@example.com"], **{"Last-Event-ID": entry})
        assert resumed.status == 200
        event = resumed.next_event(timeout=5)
        assert (event["id"], json.loads(event["data"])["call_key"]) == (later, "kavkom:hub-2")
        pages["alice@example.com"].append(resumed)
    finally:
        for ps in pages.values():
            for page in ps:
                _close(page)


def test_a_revoked_link_closes_its_page(web: Any) -> None:
    from worker.core.agent_links import create_link, revoke

    server, _ = web
    page = _open(server, create_link("bob@example.com"))
    assert page.status == 200
    revoke("bob@example.com")
    event = page.next_event(timeout=30)  # the hub checks each page's link every 15 s
    assert event["event"] == "revoked" and "was revoked" in json.loads(event["data"])["reason"]
    _close(page)


def test_sigterm_ends_every_stream_cleanly_within_seconds(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    from worker.core.agent_links import create_link

    env = base_env(fresh_database("sqlite", tmp_path), own_redis.url, tmp_path / "i", None)
    env.update(WEB_CONCURRENCY="1", WEB_THREADS="4", WEBHOOK_THREADS="2")
    environment = Environment()
    environment.set(env)
    server = Web({**os.environ, **env}, tmp_path / "web.log")
    try:
        token = create_link("alice@example.com")
        conns = []
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/agent/stream", headers={HEADER: token})
            response = conn.getresponse()
            assert response.status == 200 and response.readline().startswith(b"retry:")
            conns.append((conn, response))
        started = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGTERM)
        for _, response in conns:
            response.read()  # the whole response: it ends (the last chunk), it is not cut
        server.proc.wait(timeout=20)
        assert time.monotonic() - started < 8, server.log.read_text()
    finally:
        server.stop()
        environment.restore()
