"""The scale-out proof and the 10,000-call hour (issue #12, goals 2 and 4).

    .venv/bin/python bench/scale_out.py --calls 10000 --hour 3600 --webs 2 --workers 3

Starts, on this machine, callhook as a Heroku-like platform would run it from the Procfile:
`release` once, then `--webs` web processes (each the Procfile's gunicorn line on its own
port, as dynos behind a router) and `--workers` worker processes (each the Procfile's
celery line with its own instance directory, as a dyno has its own disk), all on one
PostgreSQL database (`--database`, default `bench_scale` on the local server, created if
missing and emptied first) and one redis-server; the fake HubSpot of `tests/` keeps
HubSpot's real budgets (100 requests per 10 s, 5 searches per second). Settings are the
defaults (the tests' fast outbox sweep is not used).

The day is `tests/mixed_day.py`'s (`plan_day`), every platform and scenario, with its
contacts seeded in the fake HubSpot, played as an hour:

- each call starts at its planned moment scaled into `--hour` seconds (3600: real time;
  600 plays the same hour six times faster, a harder test of the budgets); its deliveries
  follow in their natural order, `--gap` seconds apart (real seconds, not scaled: a phone
  rings for as long whatever the hour), each jittered so neighbours may swap; 15 % of
  them are delivered twice, up to 30 s later;
- a router sends each delivery to the web processes in turn; when one does not answer
  (it is restarting) the delivery goes to another, as a platform retries;
- the late deliveries of the day (wave 2: proofs of an answer, the ringing agent) come
  once the hour's calls are logged, then the day's last call (wave 3), as in the mixed day;
- agent pages: one page for each agent of agents.yaml on each web process, read as the
  browser reads them (SSE, reconnecting with Last-Event-ID);
- mid-way (`--kill-at`, a fraction of the hour) one worker is killed with SIGKILL, its
  whole process group at once as when a machine dies, and started again `--respawn` s
  later; at `--restart-at` one web process is restarted (SIGTERM, then started again).

Then it checks, and prints:

- every call exactly once in HubSpot with the right contact, owner, direction, outcome,
  duration and recording, and each missed-call task exactly once (`check_day`,
  `check_record`, `check_task` of the mixed day);
- HubSpot's 429s (zero expected), requests per logged call, the busiest 10 s;
- for each call, from its last delivery to its record's last write in HubSpot (p50, p90,
  p99, max, and how many took over 2 minutes);
- pops: every (call, agent) the worker had to pop (an inbound call's ringing event for a
  listed agent, folded before anything said the call was answered or over, by at least
  a second) against the cards each page received. A page on the web process that stayed
  up must have every one; the pages of the restarted process are reported apart.

The exit status is 1 when a check fails. Figures of runs: bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.agent_pages import percentile  # noqa: E402
from bench.ingest import ensure_database, serve, stop, wait_ready  # noqa: E402
from tests.conftest import (  # noqa: E402
    TOKEN,
    WEBHOOK_SECRETS,
    Environment,
    RedisServer,
    free_port,
)
from tests.fake_hubspot import FakeHubSpot  # noqa: E402
from tests.mixed_day import (  # noqa: E402
    TASKS_PATH,
    DayResult,
    Delivery,
    PlannedCall,
    WaveStats,
    _rows,
    _unsettled,
    check_agents_file,
    check_day,
    check_record,
    check_task,
    known_bugs,
    plan_day,
    prepare_mappings,
    report,
    seed_hubspot,
)
from tests.test_procfile_deploy import procfile  # noqa: E402

TWICE_SHARE = 0.15
BLOCKING_STAGES = {"answered", "ended", "cdr", "transferred", "held", "resumed"}


# -- the processes ---------------------------------------------------------------------------


class Fleet:
    """The Procfile's processes: web dynos on their own ports, worker dynos."""

    def __init__(self, env: dict[str, str], tmp: Path, webs: int, workers: int) -> None:
        self.env, self.tmp = env, tmp
        self.commands = procfile()
        self.ports = [free_port() for _ in range(webs)]
        self.webs: list[subprocess.Popen[bytes] | None] = [None] * webs
        self.workers: list[subprocess.Popen[bytes] | None] = [None] * workers
        self.up = [False] * webs
        self.lock = threading.Lock()

    def release(self) -> None:
        subprocess.run(self.commands["release"], shell=True, cwd=ROOT, env=self.env,
                       check=True, capture_output=True, timeout=300)  # fmt: skip

    def start_web(self, i: int) -> None:
        env = {**self.env, "PORT": str(self.ports[i])}
        self.webs[i] = serve(self.commands["web"], env, self.tmp / f"web{i}.log")
        wait_ready(f"http://127.0.0.1:{self.ports[i]}/readyz", timeout=120)
        with self.lock:
            self.up[i] = True

    def stop_web(self, i: int) -> None:
        with self.lock:
            self.up[i] = False
        proc = self.webs[i]
        if proc is not None:
            stop(proc)

    def start_worker(self, i: int) -> None:
        env = {**self.env, "INSTANCE_DIR": str(self.tmp / f"worker{i}")}
        self.workers[i] = serve(self.commands["worker"], env, self.tmp / f"worker{i}.log")

    def kill_worker(self, i: int) -> None:
        proc = self.workers[i]
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def live_ports(self) -> list[int]:
        with self.lock:
            return [p for p, up in zip(self.ports, self.up, strict=True) if up]

    def stop_all(self) -> None:
        for proc in [*self.webs, *self.workers]:
            if proc is not None and proc.poll() is None:
                stop(proc)


# -- the router ------------------------------------------------------------------------------


@dataclass
class Sent:
    answered: Counter[str] = field(default_factory=Counter)
    rerouted: int = 0
    failures: list[str] = field(default_factory=list)
    last_at: dict[str, float] = field(default_factory=dict)  # call key → its last delivery
    lock: threading.Lock = field(default_factory=threading.Lock)


class Router:
    """Sends a delivery to the live web processes in turn; one that does not answer (it
    is restarting) is skipped, as a platform retries a delivery that got no answer."""

    def __init__(self, fleet: Fleet, sent: Sent) -> None:
        self.fleet, self.sent = fleet, sent
        self.turn = 0
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        session: requests.Session = self.local.session
        return session

    def post(self, d: Delivery, counts_as_end: bool) -> None:
        headers = dict(d.headers)
        if d.content_type:
            headers["Content-Type"] = d.content_type
        deadline = time.monotonic() + 120
        tries = 0
        while True:
            ports = self.fleet.live_ports()
            self.turn += 1
            port = ports[self.turn % len(ports)] if ports else self.fleet.ports[0]
            try:
                response = self.session().request(
                    d.method, f"http://127.0.0.1:{port}{d.url}", data=d.body or None,
                    headers=headers, timeout=30,
                )  # fmt: skip
                if response.status_code < 500:
                    break
            except requests.RequestException:
                pass
            tries += 1
            if time.monotonic() > deadline:
                with self.sent.lock:
                    self.sent.failures.append(f"{d.call} {d.label}: no web process answered")
                return
            time.sleep(0.2)
        answer: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            answer = response.json()
        status = answer.get("status")
        with self.sent.lock:
            self.sent.rerouted += tries
            if response.status_code != 200 or status not in ("accepted", "duplicate", "ignored"):
                self.sent.failures.append(
                    f"{d.call} {d.platform} {d.label}: {response.status_code} {answer}"
                )
                return
            self.sent.answered[str(status)] += 1
            if counts_as_end:
                self.sent.last_at[d.call] = max(self.sent.last_at.get(d.call, 0.0), time.time())


def schedule(
    calls: list[PlannedCall], hour_s: float, gap_s: float, rng: random.Random
) -> list[tuple[float, Delivery, bool]]:
    """(seconds from the start, delivery, whether it is the call's own, not a repeat),
    wave 1 only, in time order."""
    planned: list[tuple[float, Delivery, bool]] = []
    for index, call in enumerate(calls):
        own = [d for d in call.deliveries if d.wave == 1]
        if not own:
            continue
        # plan_day spreads the calls over its day in index order: the same spread, scaled.
        start = index / len(calls) * hour_s
        for k, d in enumerate(own):
            at = start + k * gap_s + rng.uniform(0, gap_s * 0.6)
            planned.append((at, d, True))
            if rng.random() < TWICE_SHARE:
                planned.append((at + rng.uniform(1, 30), d, False))
    return sorted(planned, key=lambda item: item[0])


def play(
    router: Router,
    planned: list[tuple[float, Delivery, bool]],
    hour: float,
    at: dict[float, Any],
) -> float:
    """Send each delivery at its moment; `at` holds the incidents: fraction of the hour →
    action. Returns how far behind its schedule the sending fell at worst (s)."""
    incidents = sorted(at.items())
    started = time.monotonic()
    behind = 0.0
    with ThreadPoolExecutor(max_workers=48) as pool:
        for moment, delivery, own in planned:
            while incidents and moment >= incidents[0][0] * hour:
                _, action = incidents.pop(0)
                threading.Thread(target=action, daemon=True).start()
            wait = started + moment - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            behind = max(behind, -wait)
            pool.submit(router.post, delivery, own)
    return behind


# -- the agent pages -------------------------------------------------------------------------


class Page:
    """One agent page's stream, read as EventSource reads it, reconnecting with
    Last-Event-ID. Notes each card's call and when it first came."""

    def __init__(self, port: int, email: str, token: str) -> None:
        self.port, self.email, self.token = port, email, token
        self.cards: dict[str, float] = {}
        self.reconnects = 0
        self.last_id = ""
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            headers = {"X-Callhook-Agent": self.token, "Accept": "text/event-stream"}
            if self.last_id:
                headers["Last-Event-ID"] = self.last_id
            try:
                with requests.get(
                    f"http://127.0.0.1:{self.port}/agent/stream",
                    headers=headers, stream=True, timeout=(5, 60),
                ) as response:  # fmt: skip
                    if response.status_code == 200:
                        self._read(response)
            except requests.RequestException:
                pass
            if self.running:
                self.reconnects += 1
                time.sleep(1.0)  # EventSource's retry

    def _read(self, response: requests.Response) -> None:
        event_id, kind = "", ""
        for raw in response.iter_lines():
            if not self.running:
                return
            line = raw.decode("utf-8", "replace")
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "card":
                card = json.loads(line[5:])
                self.cards.setdefault(card["call_key"], time.time())
            elif not line:
                if event_id:
                    self.last_id = event_id
                event_id, kind = "", ""

    def close(self) -> None:
        self.running = False


# -- what had to pop -------------------------------------------------------------------------


def pops_due(agent_emails: set[str]) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """agent → the call keys (the root call's platform:id) the worker had to pop for them,
    each with when its ringing event was folded (epoch s): an inbound call's ringing event
    naming the agent, folded at least a second before any event of the call that said it
    was answered or over (the worker pops only a call that still rings). And every call's
    key → its root call's key: a leg that rang an agent before it was known to belong to
    the customer's call (a Kwebbl agent leg, joined later by `bridged`) popped under its
    own key, and was merged into the customer's call since."""
    import sqlalchemy as sa

    from worker.core.db import get_engine
    from worker.crm.mapping_files import worker_mapping_files

    agents = worker_mapping_files().agents
    calls: dict[int, tuple[str, str | None, int | None]] = {}
    events: dict[int, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    with get_engine().connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, platform, platform_call_id, direction, merged_into FROM calls")
        )
        for cid, platform, pcid, direction, merged in rows:
            calls[cid] = (f"{platform}:{pcid}", direction, merged)
        rows = conn.execute(
            sa.text(
                "SELECT r.call_id, r.event, w.processed_at FROM call_events r "
                "JOIN webhook_events w ON w.id = r.webhook_event_id "
                "WHERE w.processed_at IS NOT NULL"
            )
        )
        for cid, event, processed in rows:
            event = json.loads(event) if isinstance(event, str) else event
            when = processed.timestamp() if hasattr(processed, "timestamp") else 0.0
            events[cid].append((when, event))

    def root(cid: int) -> int:
        seen = 0
        while calls.get(cid, ("", None, None))[2] is not None and seen < 20:
            cid, seen = calls[cid][2], seen + 1  # type: ignore[assignment]
        return cid

    roots = {key: calls[root(cid)][0] for cid, (key, _, _) in calls.items()}
    by_root: dict[int, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for cid, items in events.items():
        by_root[root(cid)] += items
    due: dict[str, dict[str, float]] = {email: {} for email in agent_emails}
    for cid, items in by_root.items():
        key = calls[cid][0]
        items.sort(key=lambda item: item[0])
        over = [
            when
            for when, e in items
            if e.get("stage") in BLOCKING_STAGES or e.get("answered_at") or e.get("ended_at")
        ]
        first_over = min(over, default=float("inf"))
        inbound_legs: dict[str, float] = {}  # leg id → when its direction was first known
        for when, e in items:
            if e.get("direction") == "inbound":
                inbound_legs.setdefault(e["call_id"], when)
        for when, e in items:
            if e.get("stage") != "ringing" or not e.get("agent"):
                continue
            # Inbound as the worker saw it then (`pops.is_inbound`): the event says so, or
            # an earlier event of its leg did, or it is a leg of a larger call.
            known = inbound_legs.get(e["call_id"], float("inf")) <= when
            if not (e.get("direction") == "inbound" or known or e.get("parent_call_id")):
                continue
            agent = agents.find(e.get("platform", key.split(":")[0]), e["agent"])
            if agent is not None and agent.email in due and when < first_over - 1.0:
                due[agent.email][key] = min(when, due[agent.email].get(key, when))
    return due, roots


# -- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--hour", type=float, default=3600.0, help="seconds the hour lasts")
    parser.add_argument("--gap", type=float, default=8.0, help="seconds between a call's events")
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-at", type=float, default=0.4, help="0 to kill no worker")
    parser.add_argument("--respawn", type=float, default=10.0)
    parser.add_argument("--restart-at", type=float, default=0.6, help="0 to restart no web")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--settle", type=float, default=900.0, help="longest wait per wave")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/bench_scale")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    # Stopped with SIGTERM, still stop the processes it started (they run in sessions of
    # their own) and the redis-server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake HubSpot's

    say = lambda text: print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)  # noqa: E731
    day = plan_day(args.calls, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="callhook-scale-"))
    database = ensure_database(args.database)
    redis_server = RedisServer(tmp)
    redis_server.start()
    hub = FakeHubSpot(token=TOKEN, default_region="FR")
    hub.__enter__()
    mappings = prepare_mappings(tmp / "mappings")
    check_agents_file(mappings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "SECRET_KEY": "bench-scale-signing-key-0123456789abcdef",
        "DEFAULT_REGION": "FR",
        "MAPPINGS_DIR": str(mappings),
        "INSTANCE_DIR": str(tmp / "instance"),
        "HUBSPOT_ACCESS_TOKEN": TOKEN,
        "HUBSPOT_BASE_URL": hub.url,
        "LOG_LEVEL": "WARNING",
        **{f"{name.upper()}_WEBHOOK_SECRET": secret for name, secret in WEBHOOK_SECRETS.items()},
    }
    environment = Environment()
    environment.set(env)
    seeded = seed_hubspot(hub, day)
    fleet = Fleet(env, tmp, args.webs, args.workers)
    sent = Sent()
    router = Router(fleet, sent)
    pages: list[Page] = []
    waves: list[WaveStats] = []
    incidents: list[str] = []
    try:
        fleet.release()
        for i in range(args.webs):
            fleet.start_web(i)
        for i in range(args.workers):
            fleet.start_worker(i)
        from worker.core.agent_links import create_link
        from worker.crm.mapping_files import worker_mapping_files

        emails = sorted({a.email for a in worker_mapping_files().agents.agents})
        for port in fleet.ports:
            pages += [Page(port, email, create_link(email)) for email in emails]
        say(f"{args.webs} web and {args.workers} worker processes up; {len(pages)} agent pages")

        def kill() -> None:
            fleet.kill_worker(0)
            incidents.append(f"worker 0 SIGKILLed at {time.strftime('%H:%M:%S')}")
            say(incidents[-1])
            time.sleep(args.respawn)
            fleet.start_worker(0)
            say("worker 0 started again")

        def restart() -> None:
            i = args.webs - 1
            fleet.stop_web(i)
            incidents.append(f"web {i} stopped (SIGTERM) at {time.strftime('%H:%M:%S')}")
            say(incidents[-1])
            fleet.start_web(i)
            say(f"web {i} up again")

        actions: dict[float, Any] = {}
        if args.kill_at:
            actions[args.kill_at] = kill
        if args.restart_at and args.webs > 1:
            actions[args.restart_at] = restart
        planned = schedule(day.calls, args.hour, args.gap, random.Random(args.seed))
        say(f"the hour: {len(planned)} deliveries of {len(day.calls)} calls over {args.hour:.0f} s")
        started = time.monotonic()
        for wave in (1, 2, 3):
            wave_start = time.monotonic()
            if wave == 1:
                behind = play(router, planned, args.hour, actions)
                say(f"the hour's deliveries sent, at worst {behind:.1f} s behind schedule")
                batch_size = len(planned)
            else:
                batch = [d for d in day.deliveries if d.wave == wave]
                if wave == 3:  # the mixed day's incident: a 429 on the next task creation
                    hub.fail_next(1, 429, retry_after=1, path_prefix=TASKS_PATH)
                batch_size = len(batch)
                with ThreadPoolExecutor(max_workers=16) as pool:
                    for d in batch:
                        pool.submit(router.post, d, True)
            post_s = time.monotonic() - wave_start
            due = {c.external_id for c in day.calls if c.wave <= wave}
            waiting_for = _unsettled(hub, due)
            said = time.monotonic()
            while waiting_for and time.monotonic() < wave_start + post_s + args.settle:
                time.sleep(2)
                waiting_for = _unsettled(hub, due)
                if time.monotonic() - said > 30:
                    say(f"  wave {wave}: {waiting_for}")
                    said = time.monotonic()
            settle_s = time.monotonic() - wave_start
            waves.append(
                WaveStats(wave, batch_size, post_s, settle_s, not waiting_for, waiting_for)
            )
            say(
                f"wave {wave}: {batch_size} deliveries posted in {post_s:.0f} s, "
                f"settled after {settle_s:.0f} s{'' if not waiting_for else ': ' + waiting_for}"
            )
        wall_s = time.monotonic() - started
        time.sleep(3)  # the last cards' way to the pages
        due_pops, roots = pops_due(set(emails))
        requests_log = hub.requests()
        result = DayResult(
            day,
            seeded,
            sent.answered,
            waves,
            wall_s,
            hub.calls(),
            hub.tasks(),
            requests_log,
            _rows(),
            tmp / "worker0.log",
        )
    finally:
        for page in pages:
            page.close()
        fleet.stop_all()
        redis_server.stop()
        hub.__exit__(None, None, None)
        environment.restore()

    problems, known = check_day(result), []
    for call in day.calls:
        bugs = known_bugs(call)
        for name, check in (("record", check_record), ("task", check_task)):
            (known if name in bugs else problems).extend(check(result, call))
    print(report(result, problems, known))
    for problem in problems[:40]:
        print("  " + str(problem))
    print(
        f"processes: {args.webs} web, {args.workers} worker; "
        f"incidents: {'; '.join(incidents) or 'none'}"
    )
    print(
        f"deliveries: {sum(sent.answered.values())} answered {dict(sent.answered)}, "
        f"{sent.rerouted} retried on another web process, {len(sent.failures)} never answered"
    )
    for failure in sent.failures[:10]:
        print("  " + failure)
    too_many = [r for r in requests_log if r["status"] == 429][1:]  # the incident's is scripted
    print(f"HubSpot 429s from its limits: {len(too_many)}")

    # Each call: from its last delivery to its record's last write.
    by_external = {c["properties"].get("hs_call_external_id"): c for c in result.hub_calls}
    lags: list[float] = []
    for call in day.calls:
        record = by_external.get(call.external_id)
        if record is not None and call.key in sent.last_at:
            lags.append(record["updated"] - sent.last_at[call.key])
    late = [lag for lag in lags if lag > 120]
    if lags:
        print(
            f"last delivery → record's last write, {len(lags)} calls: "
            f"p50 {percentile(lags, 50):.1f} s, p90 {percentile(lags, 90):.1f} s, "
            f"p99 {percentile(lags, 99):.1f} s, max {max(lags):.1f} s; "
            f"over 2 minutes: {len(late)}"
        )

    # Pops: every card the worker had to pop, on every page of its agent.
    restarted_port = fleet.ports[-1] if args.restart_at and args.webs > 1 else None
    lost_open = 0
    for page in pages:
        due = due_pops.get(page.email, {})
        cards: dict[str, float] = {}
        for key, when in page.cards.items():
            cards[roots.get(key, key)] = min(when, cards.get(roots.get(key, key), when))
        missing = set(due) - set(cards)
        # A card that came long after its ringing was folded came too late to answer by.
        slow = [cards[k] - due[k] for k in due if k in cards]
        late_cards = sum(1 for lag in slow if lag > 30)
        stayed = page.port != restarted_port
        lost_open += len(missing) if stayed else 0
        print(
            f"page {page.email} on :{page.port} ({'stayed open' if stayed else 'restarted'}): "
            f"{len(due)} pops due, {len(due) - len(missing)} received "
            f"({late_cards} over 30 s after the ringing was folded"
            + (f"; fold → card p99 {percentile(slow, 99):.2f} s" if slow else "")
            + f"), {len(missing)} missing {sorted(missing)[:5]}, {page.reconnects} reconnects"
        )

    # A call the killed worker held comes back after the broker's visibility timeout:
    # the two minutes are goal 2's, measured without a kill.
    failed = bool(
        problems
        or too_many
        or sent.failures
        or lost_open
        or not result.settled
        or (late and not args.kill_at)
    )
    (tmp / "pages.json").write_text(
        json.dumps([{"port": p.port, "agent": p.email, "cards": p.cards} for p in pages])
    )
    if args.keep or failed:
        print(f"logs, the pages' cards and HubSpot requests kept in {tmp}")
        (tmp / "hubspot-requests.json").write_text(json.dumps(requests_log, default=str))
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
