"""Without a HubSpot token, the worker records the exact requests instead of sending them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from tests.conftest import (
    KAVKOM_SECRET,
    Environment,
    WorkerProcess,
    base_env,
    fresh_database,
    load_fixture,
    wait_until,
)


@pytest.fixture(scope="module")
def stack(db_kind, redis_server, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"dry-{db_kind}")
    env = base_env(fresh_database(db_kind, tmp), redis_server.url, tmp / "instance", None)
    environment = Environment()
    environment.set({**env, "HUBSPOT_ACCESS_TOKEN": None, "HUBSPOT_BASE_URL": None})
    redis.Redis.from_url(redis_server.url).flushall()
    worker = WorkerProcess({**env}, tmp / "worker.log")
    worker.start()
    yield {"env": env, "worker": worker}
    worker.stop()
    environment.restore()


@pytest.fixture
def client(stack):  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    return create_app({"TESTING": True}).test_client()


def test_dry_run_records_the_call_it_would_create(client, stack: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from webhook_receiver.cli.main import cli

    response = client.post(
        "/webhooks/kavkom",
        data=load_fixture("kavkom", "cdr__outbound.json"),
        content_type="application/json",
        headers={"Authorization": f"Bearer {KAVKOM_SECRET}"},
    )
    assert response.status_code == 200

    runner = CliRunner()

    def recorded() -> str | None:
        out = runner.invoke(cli, ["dry-run"]).output
        return out if "POST /crm/v3/objects/calls\n" in out else None

    output = wait_until(recorded, timeout=30)
    body = json.loads(output.split("POST /crm/v3/objects/calls\n", 1)[1].split("\n\n", 1)[0])
    assert body["properties"]["hs_call_duration"] == "120000"
    assert body["properties"]["hs_call_direction"] == "OUTBOUND"
    assert body["properties"]["hs_call_to_number"] == "+33612345678"
    assert "POST /crm/v3/objects/contacts/search" in output

    # It shows callers' numbers: an operator must sign in first.
    refused = client.get("/dry-run")
    assert refused.status_code == 401
    assert "callhook admin link" in refused.get_json()["reason"]
    link = runner.invoke(cli, ["admin", "link", "ops@example.com"]).output.strip()
    assert client.get(link.split("127.0.0.1:5000", 1)[1]).status_code == 303
    page = client.get("/dry-run")
    assert page.status_code == 200
    assert "POST /crm/v3/objects/calls" in page.get_data(as_text=True)
    assert "hs_call_duration" in page.get_data(as_text=True)
