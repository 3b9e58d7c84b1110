"""A realistic mixed day on the CRM side, as a bench: the report of a day's run.

    .venv/bin/python bench/mixed_day.py --calls 400

The day (planning, running, checking) is tests/mixed_day.py, which tests/test_mixed_day.py
runs at CI size; this adds the command line and the report (requests by kind, per logged
call, peaks, 429s). Figures of runs: bench/README.md.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import TOKEN, RedisServer, fresh_database  # noqa: E402
from tests.fake_hubspot import FakeHubSpot  # noqa: E402
from tests.mixed_day import (  # noqa: E402
    DayResult,
    Problem,
    check_day,
    check_record,
    check_task,
    known_bugs,
    peak,
    plan_day,
    request_kind,
    run_day,
)


def report(result: DayResult, problems: list[Problem], known: list[Problem]) -> str:
    day = result.day
    requests = result.requests
    kinds = Counter(request_kind(r) for r in requests)
    throttled = [r for r in requests if r["status"] == 429]
    scripted = 1 if any(c.incident for c in day.calls) else 0
    logged = len({c["properties"].get("hs_call_external_id") for c in result.hub_calls})
    repeated = len(day.deliveries) - sum(len(c.deliveries) for c in day.calls)
    searches = [r["at"] for r in requests if r["path"].endswith("/search") and r["status"] != 429]

    def counts(values: Counter[str]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(values.items()))

    bad = {p.call for p in problems if p.call != "day"}
    lines = [
        f"mixed day (seed {day.seed}): {len(day.calls)} calls, {len(day.deliveries)} deliveries "
        f"({repeated} of them repeats)",
        "  platforms: " + counts(Counter(c.platform for c in day.calls)),
        "  scenarios: " + counts(Counter(c.scenario for c in day.calls)),
        "  other end: " + counts(Counter(c.party.kind for c in day.calls)),
        "  recorded: "
        + str(sum(bool(c.expected.recording_url) for c in day.calls))
        + f", missed inbound (task due): {sum(c.expected.task for c in day.calls)}",
        "  receiver answers: " + counts(result.statuses),
        *[
            f"  wave {w.wave}: {w.deliveries} deliveries, posted in {w.post_s:.1f} s, "
            f"settled after {w.settle_s:.1f} s" + ("" if w.settled else f" NOT ({w.waiting_for})")
            for w in result.waves
        ],
        f"wall time: {result.wall_s:.1f} s from the first delivery to the last call synced",
        f"HubSpot: {logged} calls logged, {len(result.hub_calls)} call records, "
        f"{len(result.hub_tasks)} tasks",
        f"HubSpot requests: {len(requests)} ({len(requests) / max(1, logged):.2f} per logged call)",
        *[f"  {kind:<16} {count:5d}" for kind, count in kinds.most_common()],
        f"  peak: {peak([r['at'] for r in requests if r['status'] != 429], 10.0)} requests "
        "in 10 s (limit 100), "
        f"{peak(searches, 1.0)} searches in 1 s (limit 5)",
        f"429 answers from HubSpot: {len(throttled) - scripted} from its limits"
        + (f" (+{scripted} scripted: the incident)" if scripted else "")
        + "".join(f"\n  {r['method']} {r['path']}" for r in throttled[: 10 + scripted]),
        f"checks: {len(day.calls) - len(bad)}/{len(day.calls)} calls without unexpected "
        f"problems ({len(problems)} unexpected problems); {len(known)} problems from known bugs",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait, at most")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    # Before the app configures logging at INFO: one line per webhook is too many here.
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)

    day = plan_day(args.calls, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="callhook-mixed-day-"))
    redis_server = RedisServer(tmp)
    redis_server.start()
    try:
        with FakeHubSpot(token=TOKEN, default_region="FR") as hubspot:
            result = run_day(
                day,
                db_url=fresh_database("sqlite", tmp),
                redis_url=redis_server.url,
                hubspot=hubspot,
                tmp=tmp,
                timeout_s=args.timeout,
                progress=lambda text: print(text, flush=True),
            )
    finally:
        redis_server.stop()
    problems, known = check_day(result), []
    for call in day.calls:
        bugs = known_bugs(call)
        for name, check in (("record", check_record), ("task", check_task)):
            (known if name in bugs else problems).extend(check(result, call))
    print(report(result, problems, known))
    for problem in problems[:60]:
        print("  " + str(problem))
    if known:
        print("known bugs, seen as expected:")
        for problem in known:
            print("  " + str(problem))
    if args.keep or problems:
        print(f"worker log, database and HubSpot requests kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
