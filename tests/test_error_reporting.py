"""Sentry error reports: only with SENTRY_DSN, and never carrying a secret or a body.

The scrubber is checked as a plain function on an event shaped as the Flask integration
builds it; then a real SDK, pointed at a local server standing in for Sentry (no
network), reports a real failing request, and the envelope it sends is read back.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from werkzeug.wrappers import Request, Response

from tests.conftest import (
    KAVKOM_SECRET,
    ROOT,
    TEST_SECRET_KEY,
    WEBHOOK_SECRETS,
    Environment,
    base_env,
    fresh_database,
    wait_until,
)
from tests.fake_server import FakeHttpServer
from worker.core.error_reporting import FILTERED, make_scrubber, secret_values
from worker.core.settings import load_settings

HUBSPOT_TOKEN = "pat-eu1-0123abcd-hubspot-token-for-tests"
AGENT_LINK = "agent-link-token.for-tests.0123456789"
# A caller's number: personal data, never in a report (named, so source context quoting
# this file's lines does not carry it either).
CALLER = "33612345678"


class FakeSentry(FakeHttpServer):
    """Accepts envelopes as Sentry's ingest does and keeps them, decompressed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log = []

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data()
        encoding = request.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "br":
            import brotli  # type: ignore[import-not-found]

            raw = brotli.decompress(raw)
        with self._lock:
            self._log.append({"path": request.path, "body": raw.decode("utf-8", "replace")})
        return Response("{}", content_type="application/json")(environ, start_response)

    def dsn(self, project: str = "42") -> str:
        return f"http://publickey@127.0.0.1:{self._server.server_port}/{project}"


@pytest.fixture
def fake_sentry() -> Iterator[FakeSentry]:
    with FakeSentry() as fake:
        yield fake


@pytest.fixture
def environment(redis_server, tmp_path: Path) -> Iterator[Environment]:  # type: ignore[no-untyped-def]
    env = Environment()
    settings = base_env(fresh_database("sqlite", tmp_path), redis_server.url, tmp_path / "i", None)
    env.set({**settings, "HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN, "SENTRY_DSN": None})
    yield env
    env.restore()
    sentry_sdk.get_global_scope().set_client(None)  # the next tests run without it


def flask_event(secret: str) -> dict[str, Any]:
    """An event as sentry_sdk's Flask integration builds it for a failed webhook."""
    return {
        "level": "error",
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": f"HubSpot refused token {HUBSPOT_TOKEN}",
                    "stacktrace": {"frames": [{"function": "receive", "vars": {"t": secret}}]},
                }
            ]
        },
        "request": {
            "url": f"http://example.com/webhooks/kwebbl?token={secret}",
            "method": "POST",
            "query_string": f"token={secret}",
            "data": {"callUuid": "abc", "number": CALLER},
            "cookies": {"callhook_operator": "operator-cookie-value"},
            "headers": {
                "Host": "example.com",
                "Authorization": f"Bearer {KAVKOM_SECRET}",
                "X-Callhook-Agent": AGENT_LINK,
                "X-Api-Token": "x-api-token-value-123",
                "X-Auth-Token": "x-auth-token-value-123",
                "X-Kwebbl-Signature": "sha256=deadbeefcafe",
                "Content-Type": "application/json",
            },
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "httplib",
                    "data": {"url": "https://api.hubapi.com/x", "http.query": f"t={secret}"},
                },
                {"category": "log", "message": f"using {TEST_SECRET_KEY} to sign"},
            ]
        },
        "extra": {"nested": [{"note": f"prefix-{HUBSPOT_TOKEN}-suffix"}]},
    }


def test_the_scrubber_leaves_no_secret_body_query_cookie_or_credential_header(  # type: ignore[no-untyped-def]
    environment,
) -> None:
    secret = WEBHOOK_SECRETS["kwebbl"]
    secrets = secret_values(load_settings())
    assert {secret, KAVKOM_SECRET, HUBSPOT_TOKEN, TEST_SECRET_KEY} <= secrets
    event = make_scrubber(secrets)(flask_event(secret), {})
    assert event is not None
    text = json.dumps(event)
    hidden = [*WEBHOOK_SECRETS.values(), HUBSPOT_TOKEN, TEST_SECRET_KEY, AGENT_LINK, CALLER]
    hidden += ["operator-cookie-value", "x-api-token-value-123", "x-auth-token-value-123"]
    for value in [*hidden, "deadbeefcafe"]:
        assert value not in text
    request = event["request"]
    assert request["data"] == request["query_string"] == request["cookies"] == FILTERED
    assert request["url"] == "http://example.com/webhooks/kwebbl"
    headers = request["headers"]
    assert headers["Host"] == "example.com" and headers["Content-Type"] == "application/json"
    for name in ("Authorization", "X-Callhook-Agent", "X-Api-Token", "X-Auth-Token",
                 "X-Kwebbl-Signature"):  # fmt: skip
        assert headers[name] == FILTERED
    # What is not secret is kept: the report is still worth reading.
    exception = event["exception"]["values"][0]
    assert exception["value"] == f"HubSpot refused token {FILTERED}"
    assert event["extra"]["nested"][0]["note"] == f"prefix-{FILTERED}-suffix"
    assert event["breadcrumbs"]["values"][0]["data"]["url"] == "https://api.hubapi.com/x"


def test_no_dsn_no_sentry(environment) -> None:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    create_app({"TESTING": True})
    assert not sentry_sdk.get_client().is_active()


def test_a_failing_request_reaches_sentry_scrubbed(environment, fake_sentry) -> None:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    environment.set({"SENTRY_DSN": fake_sentry.dsn()})
    app = create_app({"TESTING": True})
    assert sentry_sdk.get_client().is_active()

    @app.post("/test-failure")
    def fail():  # type: ignore[no-untyped-def]
        token = HUBSPOT_TOKEN  # a local the failure would otherwise carry
        raise RuntimeError(f"HubSpot said no to {token}")

    with pytest.raises(RuntimeError):
        app.test_client().post(
            f"/test-failure?token={WEBHOOK_SECRETS['kwebbl']}",
            json={"number": CALLER},
            headers={"Authorization": f"Bearer {KAVKOM_SECRET}", "X-Callhook-Agent": AGENT_LINK},
        )
    sentry_sdk.flush(timeout=5)
    sent = wait_until(fake_sentry.requests, timeout=10)
    assert {r["path"] for r in sent} == {"/api/42/envelope/"}
    body = "\n".join(r["body"] for r in sent)
    assert "HubSpot said no to" in body and "RuntimeError" in body
    for value in (HUBSPOT_TOKEN, KAVKOM_SECRET, WEBHOOK_SECRETS["kwebbl"], AGENT_LINK, CALLER):
        assert value not in body


@pytest.mark.parametrize("dsn", [None, "http://publickey@127.0.0.1:9/1"])
def test_the_worker_entry_point_starts_sentry_only_with_a_dsn(  # type: ignore[no-untyped-def]
    environment, dsn: str | None
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    if dsn:
        env["SENTRY_DSN"] = dsn
    check = (
        "import sentry_sdk, worker.tasks.celery_worker; print(sentry_sdk.get_client().is_active())"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == str(bool(dsn))
