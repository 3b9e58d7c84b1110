"""A deployment started from the Procfile with only environment variables, as Heroku does.

`release` migrates an empty database, then `web` (gunicorn) and `worker` (celery)
run as separate processes; Kavkom's documented CDR posted over HTTP ends up in HubSpot once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import (
    KAVKOM_SECRET,
    ROOT,
    TOKEN,
    WEBHOOK_SECRETS,
    free_port,
    load_fixture,
    wait_until,
)


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return None, None


class Deployment:
    """release, then web and worker from the Procfile, with only environment variables."""

    def __init__(self, env: dict[str, str], base: str, procs: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
        self.env, self.base, self.procs = env, base, procs

    def command(self, *args: str) -> str:
        """Run `callhook ARGS` as an operator would on the deployment (`heroku run`)."""
        done = subprocess.run(
            ["callhook", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def start_deployment(  # type: ignore[no-untyped-def]
    db_kind: str, redis_url: str, hubspot, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> Deployment:
    from tests.conftest import fresh_database

    db_url = fresh_database(db_kind, tmp_path)
    if db_kind == "postgres":
        # Heroku hands out postgres:// URLs; the release must accept them as they are.
        db_url = db_url.replace("postgresql+psycopg://", "postgres://")
    port = free_port()
    bindir = str(Path(sys.executable).parent)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "PORT": str(port),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "HUBSPOT_ACCESS_TOKEN": TOKEN,
        "HUBSPOT_BASE_URL": hubspot.url,
        "DEFAULT_REGION": "FR",
        **{f"{n.upper()}_WEBHOOK_SECRET": v for n, v in WEBHOOK_SECRETS.items()},
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "WEB_CONCURRENCY": "1",
        # Every process of a deployment must share it (required with a server database).
        "SECRET_KEY": "procfile-deploy-tests-signing-key-0123456789",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    for key in ("MAPPINGS_DIR", "OUTBOX_GRACE_S", "OUTBOX_SWEEP_INTERVAL_S", "CRM_RESYNC_AFTER_S"):
        env.pop(key, None)
    env.update(extra_env or {})
    redis.Redis.from_url(redis_url).flushall()  # a deployment starts with its own Redis
    commands = procfile()
    release = subprocess.run(
        commands["release"],
        shell=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stderr
    logs = tmp_path / "procs.log"
    with logs.open("wb") as out:
        procs = [
            subprocess.Popen(
                commands[name],
                shell=True,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for name in ("web", "worker")
        ]
    deployment = Deployment(env, f"http://127.0.0.1:{port}", procs)
    try:
        wait_until(lambda: http("GET", deployment.base + "/readyz")[0] == 200, timeout=60)
    except BaseException:
        deployment.stop()
        raise
    return deployment


@pytest.fixture
def deployment(db_kind, redis_server, hubspot, tmp_path: Path):  # type: ignore[no-untyped-def]
    started = start_deployment(db_kind, redis_server.url, hubspot, tmp_path)
    try:
        yield started.base
    finally:
        started.stop()


def test_seed_cdr_through_a_procfile_deployment(
    deployment: str, hubspot: Any, tmp_path: Path
) -> None:
    hubspot.reset()
    contact = hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="+33 6 12 34 56 78")
    seed = load_fixture("kavkom", "cdr__outbound.json")
    url = deployment + "/webhooks/kavkom"
    json_type = {"Content-Type": "application/json"}
    good = {**json_type, "Authorization": f"Bearer {KAVKOM_SECRET}"}

    assert http("POST", url, seed, good)[0] == 200
    (call,) = wait_until(lambda: hubspot.calls(), timeout=60)
    assert call["properties"]["hs_call_duration"] == "120000"
    assert call["properties"]["hs_call_direction"] == "OUTBOUND"
    assert call["associations"]["contacts"] == [contact]

    status, body = http("POST", url, seed, good)
    assert (status, body["status"]) == (200, "duplicate")
    assert http("POST", url, seed, {**json_type, "Authorization": "Bearer wrong"})[0] == 401
    assert http("POST", url, seed, json_type)[0] == 401
    assert http("POST", url, b"not json", good)[0] == 400
    status, body = http("POST", url, b'{"event": "cdr"}', good)
    # Kept as unmapped, answered 200 (kavkom.yaml: `on_unmapped: accept`).
    assert (status, body["status"]) == (200, "unmapped") and "callUuid is missing" in body["reason"]
    assert len(hubspot.calls()) == 1

    # A platform that authenticates with ?token= (Kwebbl): the secret stays out of the logs.
    kwebbl = f"{deployment}/webhooks/kwebbl?token={WEBHOOK_SECRETS['kwebbl']}"
    assert http("POST", kwebbl, b'{"event_type": "nonsense"}', json_type)[1]["status"] == "unmapped"
    log_file = tmp_path / "procs.log"
    logs = wait_until(
        lambda: (
            (text := log_file.read_text(errors="replace")) and "/webhooks/kwebbl" in text and text
        ),
        timeout=30,
    )  # the access line is written after the answer
    assert WEBHOOK_SECRETS["kwebbl"] not in logs

    # A platform name with a line break cannot forge a log line (access log and app log).
    forged = "webhook.accepted platform=kavkom id=999"
    assert (
        http("POST", f"{deployment}/webhooks/x%0A{forged.replace(' ', '%20')}", seed, good)[0]
        == 404
    )
    logs = wait_until(
        lambda: (text := log_file.read_text(errors="replace")) and "/webhooks/x" in text and text,
        timeout=30,
    )
    assert not [line for line in logs.splitlines() if line.startswith(forged)]
    assert "/webhooks/x\\x0a" + forged in logs


def test_every_platforms_calls_through_a_procfile_deployment(  # type: ignore[no-untyped-def]
    db_kind, redis_server, hubspot, tmp_path: Path
) -> None:
    # The five platforms' payloads (answered, missed, busy, transfers, ring groups),
    # shuffled with duplicates and late deliveries, posted over HTTP to gunicorn started
    # from the Procfile, logged by the Procfile's worker: one correct HubSpot call each.
    from tests import mixed_day

    day = mixed_day.plan_day(20, seed=11)
    assert {c.platform for c in day.calls} == {"kavkom", "kwebbl", "kazoo", "uis", "voximplant"}
    from tests.conftest import fresh_database

    result = mixed_day.run_day(
        day, db_url=fresh_database(db_kind, tmp_path), redis_url=redis_server.url,
        hubspot=hubspot, tmp=tmp_path, timeout_s=180, procfile=True,
    )  # fmt: skip
    problems = mixed_day.check_day(result)
    for call in day.calls:
        problems += mixed_day.check_record(result, call) + mixed_day.check_task(result, call)
    assert problems == [], "\n".join(map(str, problems))
