"""HubSpot requests per call and the wait from a call's end to its record: a trickle, then a burst.

The real pieces, as bench/mixed_day.py starts them: a fresh SQLite database, Redis, a
Celery worker process (`--concurrency=2`), the receiver (Flask's test client, in process)
and the fake HubSpot (tests/fake_hubspot.py: 100 requests per 10 s, 5 searches per
second, batches counted once). Half the numbers belong to known contacts, half are
unknown callers; each call is one Kavkom CDR (`cdr__outbound.json`), which ends it.

- trickle: `--trickle` CDRs, one every `--gap` seconds;
- burst: `--burst` CDRs posted back to back, as fast as the receiver takes them.

For each phase: HubSpot requests per logged call (by kind), and from each CDR's post (the
call's end as callhook sees it) to its HubSpot record's creation: median, p90, max.

    .venv/bin/python bench/hubspot_burst.py --trickle 10 --gap 3 --burst 200
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import (  # noqa: E402
    TOKEN,
    Environment,
    RedisServer,
    WorkerProcess,
    base_env,
    fresh_database,
)
from tests.fake_hubspot import FakeHubSpot  # noqa: E402
from tests.mixed_day import request_kind  # noqa: E402
from tests.test_call_logging_e2e import AUTH, cdr  # noqa: E402


def number(i: int) -> str:
    return f"3361{i:07d}"


def created_at(hubspot: FakeHubSpot) -> dict[str, float]:
    """Each logged call's creation time in the fake, by hs_call_external_id."""
    with hubspot._lock:
        return {
            str(o["properties"].get("hs_call_external_id")): float(o["created"])
            for o in hubspot.objects["calls"].values()
        }


def phase(
    client: Any, hubspot: FakeHubSpot, name: str, ids: list[str], gap: float, timeout: float
) -> dict[str, Any]:
    first_request = len(hubspot.requests())
    posted: dict[str, float] = {}
    for n, call_id in enumerate(ids):
        payload = cdr(call_id, number=number(int(call_id.rsplit("-", 1)[1])), duration=60)
        response = client.post("/webhooks/kavkom", json=payload, headers=AUTH)
        assert response.status_code == 200, response.json
        posted[f"callhook:kavkom:{call_id}"] = time.time()
        if gap and n + 1 < len(ids):
            time.sleep(gap)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        made = created_at(hubspot)
        if all(key in made for key in posted):
            break
        time.sleep(0.2)
    made = created_at(hubspot)
    waits = sorted(made[k] - posted[k] for k in posted if k in made)
    requests = hubspot.requests()[first_request:]
    return {
        "name": name,
        "calls": len(ids),
        "logged": len(waits),
        "requests": len(requests),
        "kinds": Counter(request_kind(r) for r in requests),
        "throttled": sum(r["status"] == 429 for r in requests),
        "waits": waits,
        "post_s": max(posted.values()) - min(posted.values()),
    }


def describe(result: dict[str, Any]) -> str:
    waits = result["waits"]
    lines = [
        f"{result['name']}: {result['calls']} calls posted over {result['post_s']:.1f} s, "
        f"{result['logged']} logged; {result['requests']} HubSpot requests "
        f"({result['requests'] / max(1, result['logged']):.2f} per call), "
        f"{result['throttled']} answered 429",
        *[f"  {kind:<22} {count:5d}" for kind, count in result["kinds"].most_common()],
    ]
    if waits:
        p90 = waits[min(len(waits) - 1, int(len(waits) * 0.9))]
        lines.append(
            f"  end -> record: median {statistics.median(waits):.2f} s, p90 {p90:.2f} s, "
            f"max {waits[-1]:.2f} s"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trickle", type=int, default=10, help="calls in the trickle")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds between trickle calls")
    parser.add_argument("--burst", type=int, default=200, help="calls in the burst")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)

    from webhook_receiver.web import create_app

    tmp = Path(tempfile.mkdtemp(prefix="callhook-burst-"))
    redis_server = RedisServer(tmp)
    redis_server.start()
    environment = Environment()
    worker = None
    try:
        with FakeHubSpot(token=TOKEN, default_region="FR") as hubspot:
            env = base_env(
                fresh_database("sqlite", tmp), redis_server.url, tmp / "instance", hubspot
            )
            environment.set(env)
            for i in range(0, args.trickle + args.burst, 2):  # every other caller is known
                hubspot.add_contact(firstname="Known", lastname=str(i), phone="+" + number(i))
            worker = WorkerProcess(env, tmp / "worker.log")
            worker.start()
            client = create_app({"TESTING": True}).test_client()
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            logging.getLogger("callhook").setLevel(logging.WARNING)
            trickle = [f"trickle-{i}" for i in range(args.trickle)]
            burst = [f"burst-{i}" for i in range(args.trickle, args.trickle + args.burst)]
            results = [
                phase(client, hubspot, "trickle", trickle, args.gap, args.timeout),
                phase(client, hubspot, "burst", burst, 0.0, args.timeout),
            ]
    finally:
        if worker is not None:
            worker.stop()
        environment.restore()
        redis_server.stop()
    for result in results:
        print(describe(result))
    if args.keep:
        print(f"kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
