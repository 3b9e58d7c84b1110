"""Ingest against the durable floor (issue #12, goal 1), side by side in one run.

    .venv/bin/python bench/ingest.py [--duration 20] [--connections 32]

Starts, on this machine, with the same gunicorn config (`webhook_receiver/web/gunicorn_conf.py`,
`WEB_CONCURRENCY` and `WEB_THREADS` as set) and the same PostgreSQL database:

1. callhook's `web` process, exactly as the Procfile starts it, taking unique Kavkom CDRs
   (the example of Kavkom's API docs, another `callUuid` each time) on `/webhooks/kavkom`;
2. the durable floor (`bench/durable_floor.py`): one `INSERT … COMMIT` of the raw body;
3. a bare Flask hello-world (the floor app's `/hello`), for scale.

Each is loaded by Debian's `wrk` (`bench/ingest.lua`) for `--duration` seconds after a
short warm-up; the table gives requests per second, p50 and p99 answer times, and
callhook's rate as a fraction of the floor's. No Celery worker runs: the deliveries are
queued in Redis for later, as they would be during a burst. The database is
`--database` (default: a `callhook_bench` database on the local server, created if
missing and emptied first), never the tests' one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import RedisServer, free_port  # noqa: E402
from tests.test_procfile_deploy import procfile  # noqa: E402

SECRET = "bench-ingest-webhook-secret"
LUA = ROOT / "bench" / "ingest.lua"


def ensure_database(url: str) -> str:
    """Create the bench database if missing, and empty it: every run starts alike."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from worker.core.migrate import upgrade

    sa_url = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = sa.create_engine(sa_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        name = sa_url.database
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if exists.first() is None:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = sa.create_engine(sa_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    rendered = sa_url.render_as_string(hide_password=False)
    upgrade(rendered)
    return rendered


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"bench: {url} did not answer within {timeout} s")


def serve(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, shell=True, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load(url: str, path: str, seconds: int, connections: int, run: str, auth: str = "") -> dict:
    """Run wrk; requests/s, p50/p99 in ms, and how many answers were not 2xx."""
    method = "GET" if path == "/hello" else "POST"
    env = {**os.environ, "BENCH_PATH": path, "BENCH_AUTH": auth, "BENCH_RUN": run,
           "BENCH_METHOD": method}  # fmt: skip
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url],
        env=env, capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rate": rate, "p50": p50, "p99": p99, "non2xx": int(bad.group(1)) if bad else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/callhook_bench")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: needs Debian's wrk (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="callhook-ingest-"))
    database = ensure_database(args.database)
    redis_server = RedisServer(tmp)
    redis_server.start()
    bindir = str(Path(sys.executable).parent)
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "SECRET_KEY": "bench-ingest-signing-key-0123456789abcdef",
        "KAVKOM_WEBHOOK_SECRET": SECRET,
        "INSTANCE_DIR": str(tmp / "instance"),
        "LOG_LEVEL": "WARNING",
    }
    ports = {"callhook": free_port(), "floor": free_port()}
    web = serve(procfile()["web"], {**base_env, "PORT": str(ports["callhook"])}, tmp / "web.log")
    floor = serve(
        'gunicorn -c python:webhook_receiver.web.gunicorn_conf "bench.durable_floor:create_app()"',
        {**base_env, "PORT": str(ports["floor"])},
        tmp / "floor.log",
    )
    results: dict[str, dict] = {}
    try:
        wait_ready(f"http://127.0.0.1:{ports['callhook']}/healthz")
        wait_ready(f"http://127.0.0.1:{ports['floor']}/hello")
        plan = [
            ("floor", ports["floor"], "/ingest", ""),
            ("callhook", ports["callhook"], "/webhooks/kavkom", SECRET),
            ("hello", ports["floor"], "/hello", ""),
        ]
        for name, port, path, auth in plan:
            url = f"http://127.0.0.1:{port}"
            load(url, path, args.warmup, args.connections, f"warm-{name}", auth)
            results[name] = load(url, path, args.duration, args.connections, name, auth)
    finally:
        stop(web)
        stop(floor)
        redis_server.stop()
    floor_rate = results["floor"]["rate"]
    print(f"wrk -t2 -c{args.connections} -d{args.duration}s, unique Kavkom CDRs, {database}")
    print(f"{'target':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'x floor':>8}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['rate']:>9.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['non2xx']:>8} "
            f"{r['rate'] / floor_rate:>8.2f}"
        )
    print(f"logs: {tmp}")


if __name__ == "__main__":
    main()
