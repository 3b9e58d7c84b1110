"""``LOG_FORMAT=json``: one JSON object per line, in every logger of the web process.

The web process is the Procfile's real gunicorn command: its access and error logs and
the application's lines must all parse, and a platform name carrying ``%0A`` must stay
inside its own record (JSON escapes it) rather than forge a second one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    KAVKOM_SECRET,
    ROOT,
    TEST_SECRET_KEY,
    WEBHOOK_SECRETS,
    free_port,
    fresh_database,
    wait_until,
)
from worker.core.log_format import JsonFormatter, message_fields


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def json_web(redis_server, tmp_path: Path) -> Iterator[tuple[str, Path]]:  # type: ignore[no-untyped-def]
    """The Procfile's `web` process with LOG_FORMAT=json; its output goes to a file."""
    port = free_port()
    bindir = str(Path(sys.executable).parent)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "PORT": str(port),
        "DATABASE_URL": fresh_database("sqlite", tmp_path),
        "REDIS_URL": redis_server.url,
        "DEFAULT_REGION": "FR",
        "SECRET_KEY": TEST_SECRET_KEY,
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "WEB_CONCURRENCY": "1",
        "LOG_FORMAT": "json",
        **{f"{n.upper()}_WEBHOOK_SECRET": v for n, v in WEBHOOK_SECRETS.items()},
    }
    web = next(
        line.partition(":")[2].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            web, shell=True, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=60)
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def records(log: Path) -> list[dict[str, Any]]:
    """Every line of the log as JSON (a line that does not parse fails the test)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_every_line_of_the_web_process_is_one_json_object(json_web) -> None:  # type: ignore[no-untyped-def]
    base, log = json_web
    forged = "webhook.accepted platform=kavkom id=999"
    auth = {"Authorization": f"Bearer {KAVKOM_SECRET}", "Content-Type": "application/json"}
    assert post(f"{base}/webhooks/x%0A{forged.replace(' ', '%20')}", b"{}", auth) == 404

    def logged() -> list[dict[str, Any]] | None:
        found = records(log)
        return found if any(r["event"] == "http.access" and "/webhooks/x" in r["message"]
                            for r in found) else None  # fmt: skip

    found = wait_until(logged, timeout=30)
    keys = {"ts", "level", "logger", "event", "message", "fields"}
    assert all(keys <= set(r) for r in found)
    assert all(r["ts"].endswith("Z") for r in found)
    assert {"gunicorn.error", "gunicorn.access", "callhook.webhook"} <= {r["logger"] for r in found}
    # The forged record exists only inside the real one, never as a record of its own.
    assert not [r for r in found if r["event"] == "webhook.accepted"]
    (refusal,) = [r for r in found if r["event"] == "webhook.unknown_platform"]
    assert refusal["level"] == "INFO"
    assert refusal["fields"]["platform"] == "x\n" + forged
    assert refusal["fields"]["status"] == 404
    (access,) = [r for r in found if r["event"] == "http.access" and "/webhooks/x" in r["message"]]
    assert access["fields"]["path"] == "/webhooks/x\n" + forged
    assert access["fields"]["status"] == "404"
    assert access["fields"]["method"] == "POST"


def test_fields_come_from_the_format_string_not_from_the_values() -> None:
    record = logging.LogRecord(
        "callhook.webhook", logging.WARNING, __file__, 1,
        "%s platform=%s id=%s status=%s reason=%s (100%% kept)",
        ("webhook.unmapped", "x id=7 status=200", 12, 422, "no\u2028rule\x85"), None,
    )  # fmt: skip
    assert message_fields(record) == {
        "platform": "x id=7 status=200",
        "id": 12,
        "status": 422,
        "reason": "no\u2028rule\x85",
    }
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\u2028" not in line and "\x85" not in line
    parsed = json.loads(line)
    assert parsed["event"] == "webhook.unmapped"
    assert parsed["fields"]["reason"] == "no\u2028rule\x85"
    assert parsed["message"].endswith("(100% kept)")


def test_a_traceback_stays_inside_its_record() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord(
            "callhook.worker", logging.ERROR, __file__, 1, "event.fold_failed id=%s", (5,),
            sys.exc_info(),
        )  # fmt: skip
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    parsed = json.loads(line)
    assert parsed["fields"] == {"id": 5}
    assert "Traceback" in parsed["exc_info"] and "ValueError: bad\nvalue" in parsed["exc_info"]


def test_other_libraries_lines_have_no_event() -> None:
    record = logging.LogRecord(
        "celery.worker", logging.INFO, __file__, 1, "Task %(name)s received", ({"name": "t"},), None
    )
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["event"] is None and parsed["fields"] == {}
    assert parsed["message"] == "Task t received"
