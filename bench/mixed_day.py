"""A realistic mixed day on the CRM side, as a bench: the command line of a day's run.

    .venv/bin/python bench/mixed_day.py --calls 400

The day (planning, running, checking, and its report: requests by kind, per logged call,
peaks, 429s) is tests/mixed_day.py, which tests/test_mixed_day.py runs at CI size; this is
its command line. Figures of runs: bench/README.md.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import TOKEN, RedisServer, fresh_database  # noqa: E402
from tests.fake_hubspot import FakeHubSpot  # noqa: E402
from tests.mixed_day import (  # noqa: E402
    check_day,
    check_record,
    check_task,
    known_bugs,
    plan_day,
    report,
    run_day,
)


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
