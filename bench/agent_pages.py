"""1,000 open agent pages on one web process (issue #12, goal 3).

    .venv/bin/python bench/agent_pages.py [--pages 1000] [--duration 20] [--pops 100]

Starts, on this machine, callhook's `web` process exactly as the Procfile starts it, with
ONE gunicorn worker (`WEB_CONCURRENCY=1`, `WEB_THREADS` and `WEBHOOK_THREADS` as set,
32 and 8 by default), a PostgreSQL database (`--database`, default a `bench_pages`
database on the local server, created if missing and emptied first, never the tests'
one) and a redis-server. `agents.yaml` lists `--pages` agents (Kavkom extensions
3000, 3001, …), each with a signed agent link; then:

1. idle: `wrk` posts unique Kavkom CDRs to `/webhooks/kavkom` (bench/ingest.lua) for
   `--duration` s after a warm-up: the webhooks' p50/p99 with no page open;
2. one page per agent is opened on `/agent/stream` (raw sockets, as `fetch()` opens it,
   token in the X-Callhook-Agent header): how many are served (200) or refused (503);
   the worker's RSS before and after, per open page;
3. loaded: the same `wrk` run with every page still open, and how many pages are still
   open after it;
4. pops: a Celery worker (as the Procfile starts it) and the fake HubSpot
   (tests/fake_hubspot.py) are started, and `--pops` Kavkom ringing webhooks are posted,
   paced `--pace` s apart, each for another agent spread over the open pages; ring→card is
   from the bench's clock before the POST to the card's arrival on that agent's open
   stream (the bytes on the socket; the browser's rendering adds a few ms, see
   bench/screen_pop_latency.py), while every page stays open.

No Celery worker runs during the `wrk` phases: the deliveries queue in Redis, as in
bench/ingest.py, and are dropped (rows and messages) before the pops.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import SECRET, ensure_database, load, serve, stop, wait_ready  # noqa: E402
from tests.conftest import (  # noqa: E402
    Environment,
    RedisServer,
    WorkerProcess,
    free_port,
    load_fixture,
)
from tests.fake_hubspot import FakeHubSpot  # noqa: E402
from tests.test_procfile_deploy import procfile  # noqa: E402

FIRST_EXTENSION = 3000
# A card's event: its id is the Redis stream id, whose first part is the moment (Redis's
# clock, this machine's) the worker added the card; then its call.
CARD = re.compile(rb'id: (\d+)-\d+\nevent: card\ndata: \{[^\n]*?"call_key": ?"kavkom:([^"]+)"')


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def email(i: int) -> str:
    return f"agent{i:04d}@bench.example"


def write_mappings(target: Path, agents: int) -> Path:
    """The repository's mappings, with `agents` agents in agents.yaml."""
    shutil.copytree(ROOT / "mappings", target)
    lines = ["kind: agents", "agents:"]
    for i in range(agents):
        lines += [
            f"  - email: {email(i)}",
            f"    name: Bench Agent {i}",
            "    extensions:",
            f'      kavkom: ["{FIRST_EXTENSION + i}"]',
        ]
    (target / "agents.yaml").write_text("\n".join(lines) + "\n")
    return target


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def gunicorn_worker(session: int) -> int:
    """The pid of the one gunicorn worker in `session` (the master's only gunicorn child)."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session:  # the session id
            procs[int(entry.name)] = (int(fields[1]), cmdline)

    # The shell that runs the Procfile's line is "gunicorn" too (its command line): the
    # worker is the gunicorn whose parent is a gunicorn whose parent is one too.
    def runs_gunicorn(pid: int) -> bool:
        return pid in procs and "gunicorn" in procs[pid][1]

    workers = [
        pid
        for pid, (ppid, _) in procs.items()
        if runs_gunicorn(pid) and runs_gunicorn(ppid) and runs_gunicorn(procs[ppid][0])
    ]
    if not workers:  # no shell between (an exec'ing shell)
        workers = [
            pid for pid, (ppid, _) in procs.items() if runs_gunicorn(pid) and runs_gunicorn(ppid)
        ]
    if len(workers) != 1:
        raise SystemExit(f"bench: expected one gunicorn worker, found {workers}")
    return workers[0]


class Pages:
    """Agent pages' streams on raw sockets, read by one thread; notes when each call's
    card first arrives."""

    def __init__(self, port: int, tokens: list[str]) -> None:
        self.selector = selectors.DefaultSelector()
        self.status: dict[int, int] = {}
        self.open: set[int] = set()
        self.seen: dict[str, float] = {}  # call → when its card arrived (ms)
        self.added: dict[str, float] = {}  # call → when the worker added it to Redis (ms)
        self.tails: dict[int, bytes] = {}
        self.lock = threading.Lock()
        self.running = True
        self.socks: list[socket.socket] = []
        for i, token in enumerate(tokens):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                f"GET /agent/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"X-Callhook-Agent: {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, i)
            self.socks.append(sock)
            self.tails[i] = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(0.05):
                i = key.data
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                now = time.time() * 1000
                if not data:
                    self.selector.unregister(key.fileobj)
                    with self.lock:
                        self.open.discard(i)
                    continue
                buf = self.tails[i] + data
                with self.lock:
                    if i not in self.status and buf.startswith(b"HTTP/1."):
                        self.status[i] = int(buf.split(b" ", 2)[1])
                        if self.status[i] == 200:
                            self.open.add(i)
                    for match in CARD.finditer(buf):
                        call = match.group(2).decode()
                        self.seen.setdefault(call, now)
                        self.added.setdefault(call, float(match.group(1)))
                self.tails[i] = buf[-4096:]

    def wait_answered(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.status) == len(self.socks):
                    return
            time.sleep(0.1)

    def counts(self) -> dict[str, int]:
        with self.lock:
            codes = list(self.status.values())
            return {
                "served": codes.count(200),
                "refused": sum(1 for c in codes if c != 200),
                "unanswered": len(self.socks) - len(codes),
                "open": len(self.open),
            }

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        for sock in self.socks:
            sock.close()


def drop_backlog(database: str, url: str) -> int:
    """Drop the deliveries the wrk runs left (tens of thousands of CDRs to fold: their
    rows, which the outbox sweep would queue again, and their Celery messages), so that
    the pops' folds do not wait behind them."""
    import redis
    import sqlalchemy as sa

    engine = sa.create_engine(database)
    # The web process's publisher thread publishes the accepted deliveries behind the
    # requests: wait until it has published them all, then drop them.
    unpublished = sa.text("SELECT count(*) FROM webhook_events WHERE enqueued_at IS NULL")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if not conn.execute(unpublished).scalar():
                break
        time.sleep(0.5)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE webhook_events CASCADE"))
    engine.dispose()
    client = redis.Redis.from_url(url)
    dropped = 0
    for key in client.scan_iter(count=1000):
        if client.type(key) == b"list":
            dropped += client.llen(key)
            client.delete(key)
    return dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pops", type=int, default=100)
    parser.add_argument("--pace", type=float, default=0.25, help="seconds between pops")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/bench_pages")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: needs Debian's wrk (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="callhook-pages-"))
    database = ensure_database(args.database)
    redis_server = RedisServer(tmp)
    redis_server.start()
    bindir = str(Path(sys.executable).parent)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake HubSpot's request log
    hub = FakeHubSpot(token="pat-bench", default_region="FR", rate_limit=(10_000, 10.0))
    hub.__enter__()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "SECRET_KEY": "bench-pages-signing-key-0123456789abcdef",
        "KAVKOM_WEBHOOK_SECRET": SECRET,
        "INSTANCE_DIR": str(tmp / "instance"),
        "MAPPINGS_DIR": str(write_mappings(tmp / "mappings", args.pages)),
        "HUBSPOT_ACCESS_TOKEN": "pat-bench",
        "HUBSPOT_BASE_URL": hub.url,
        "DEFAULT_REGION": "FR",
        "LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": "1",
    }
    environment = Environment()
    environment.set(env)
    from worker.core.agent_links import create_link

    tokens = [create_link(email(i)) for i in range(args.pages)]
    port = free_port()
    web = serve(procfile()["web"], {**env, "PORT": str(port)}, tmp / "web.log")
    url = f"http://127.0.0.1:{port}"
    results: dict[str, dict] = {}
    pages: Pages | None = None
    worker: WorkerProcess | None = None
    figures: dict[str, float] = {}
    samples: list[float] = []
    delivery: list[float] = []
    try:
        wait_ready(f"{url}/healthz")
        pid = gunicorn_worker(web.pid)
        load(url, "/webhooks/kavkom", args.warmup, args.connections, "warm", SECRET)
        results["idle"] = load(
            url, "/webhooks/kavkom", args.duration, args.connections, "idle", SECRET
        )
        time.sleep(1)
        figures["rss_before"] = rss_kib(pid)
        started = time.monotonic()
        pages = Pages(port, tokens)
        pages.wait_answered(timeout=120)
        figures["open_s"] = time.monotonic() - started
        time.sleep(3)  # past the first presence refresh and a few loop turns
        figures["rss_open"] = rss_kib(pid)
        opened = pages.counts()
        results["loaded"] = load(
            url, "/webhooks/kavkom", args.duration, args.connections, "loaded", SECRET
        )
        after_load = pages.counts()
        figures["rss_after_load"] = rss_kib(pid)
        # Pops: the worker folds the ringing deliveries and pushes the cards.
        for i in range(args.pops):
            digits = f"{i:06d}"
            hub.add_contact(firstname="Bench", lastname=f"Caller {i}", company="Bench Co",
                            phone=f"06 12 {digits[:2]} {digits[2:4]} {digits[4:]}")  # fmt: skip
        drop_backlog(database, redis_server.url)
        worker = WorkerProcess(env, tmp / "worker.log")
        worker.start()
        time.sleep(3)  # let the worker finish booting
        payload = json.loads(load_fixture("kavkom", "live__ringing_inbound_with_variables.json"))
        served = sorted(pages.open)
        if served:
            for i in range(args.pops):
                agent = served[(i * 7919) % len(served)]
                call_id = f"pop-{i}"
                body = {**payload, "callUuid": call_id, "number": f"33612{i:06d}",
                        "presenceId": f"{FIRST_EXTENSION + agent}@client.kavkom.com"}  # fmt: skip
                sent = time.time() * 1000
                response = requests.post(
                    f"{url}/webhooks/kavkom", json=body, timeout=10,
                    headers={"Authorization": f"Bearer {SECRET}"},
                )  # fmt: skip
                response.raise_for_status()
                deadline = time.monotonic() + 10
                while call_id not in pages.seen and time.monotonic() < deadline:
                    time.sleep(0.002)
                if call_id in pages.seen:
                    samples.append(pages.seen[call_id] - sent)
                    delivery.append(pages.seen[call_id] - pages.added[call_id])
                time.sleep(args.pace)
        after_pops = pages.counts()
        figures["rss_end"] = rss_kib(pid)
    finally:
        if pages is not None:
            pages.close()
        if worker is not None:
            worker.stop()
        stop(web)
        redis_server.stop()
        hub.__exit__(None, None, None)
        environment.restore()
    threads = os.environ.get("WEB_THREADS", "32")
    kept = os.environ.get("WEBHOOK_THREADS", "8")
    print(f"one web process (WEB_CONCURRENCY=1, WEB_THREADS={threads}, WEBHOOK_THREADS={kept})")
    print(f"database {database}")
    print(
        f"pages asked {args.pages}: served {opened['served']}, refused {opened['refused']}, "
        f"unanswered {opened['unanswered']} (answered within {figures['open_s']:.1f} s); "
        f"still open after the loaded run {after_load['open']}, after the pops {after_pops['open']}"
    )
    delta = figures["rss_open"] - figures["rss_before"]
    per_page = delta / opened["served"] if opened["served"] else 0.0
    print(
        f"worker RSS: {figures['rss_before'] / 1024:.1f} MiB before, "
        f"{figures['rss_open'] / 1024:.1f} MiB with the pages open, "
        f"{figures['rss_after_load'] / 1024:.1f} MiB after the loaded run, "
        f"{figures['rss_end'] / 1024:.1f} MiB at the end: {per_page:.1f} KiB per open page"
    )
    print(f"wrk -t2 -c{args.connections} -d{args.duration}s, unique Kavkom CDRs")
    print(f"{'phase':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, r in results.items():
        print(f"{name:<8} {r['rate']:>8.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['non2xx']:>8}")
    ratio = results["loaded"]["p99"] / results["idle"]["p99"]
    print(f"webhook p99 with the pages open / idle: {ratio:.2f}")
    if samples:
        print(
            f"ring→card on an open stream, {len(samples)}/{args.pops} pops with every page open: "
            f"p50 {percentile(samples, 50):.0f} ms, p90 {percentile(samples, 90):.0f} ms, "
            f"p99 {percentile(samples, 99):.0f} ms, max {max(samples):.0f} ms"
        )
        print(
            f"of which the card's way from Redis to the page (the stream hub; XADD → bytes "
            f"on the socket): p50 {percentile(delivery, 50):.0f} ms, "
            f"p99 {percentile(delivery, 99):.0f} ms, max {max(delivery):.0f} ms"
        )
    print(f"logs: {tmp}")


if __name__ == "__main__":
    main()
