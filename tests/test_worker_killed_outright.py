"""A worker killed outright (SIGKILL of its whole process group, as when a machine dies)
while it folds an event: another worker takes the event over, and the call is logged once.

The killed worker never acknowledges its task, so Redis keeps it aside until the broker's
visibility timeout has passed (`BROKER_VISIBILITY_TIMEOUT_S`, 5 minutes by default; a few
seconds here), then hands it to a live worker; the outbox sweep re-enqueues the stored
event after twice that in case the broker lost it. Before 2026-12-06 this took an hour.

PostgreSQL only: the test holds the call's row lock so that the worker is caught in the
middle of the fold, which SQLite (one writer for the whole file) cannot do without also
stopping the receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from tests.conftest import (
    KAVKOM_SECRET,
    Environment,
    RedisServer,
    WorkerProcess,
    base_env,
    fresh_database,
    load_fixture,
    wait_until,
)
from tests.fake_hubspot import FakeHubSpot
from tests.test_call_logging_e2e import call_row, calls_for
from worker.core.models import CrmStatus

NUMBER = "+33612345670"


@pytest.fixture(scope="module")
def stack(  # type: ignore[no-untyped-def]
    db_kind: str,
    redis_server: RedisServer,
    hubspot: FakeHubSpot,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    if db_kind != "postgres":
        pytest.skip("needs row locks a test can hold (PostgreSQL)")
    tmp = tmp_path_factory.mktemp("killed-outright")
    db_url = fresh_database(db_kind, tmp)
    env = {
        **base_env(db_url, redis_server.url, tmp / "instance", hubspot),
        "BROKER_VISIBILITY_TIMEOUT_S": "6",
        # The sweep's own net (twice the timeout) is the slower path: left at its usual
        # pace, it cannot be what brings the event back first.
        "OUTBOX_SWEEP_INTERVAL_S": "30",
    }
    environment = Environment()
    environment.set(env)
    redis.Redis.from_url(redis_server.url).flushall()
    workers = [WorkerProcess(env, tmp / "worker-a.log"), WorkerProcess(env, tmp / "worker-b.log")]
    workers[0].start()
    yield {"env": env, "workers": workers, "db_url": db_url}
    for worker in workers:
        worker.kill()
    environment.restore()


def _post(client: Any, fixture: str, call_id: str) -> None:
    payload = json.loads(load_fixture("kavkom", fixture))
    payload["data"].update(callUuid=call_id, number=NUMBER.removeprefix("+"))
    response = client.post(
        "/webhooks/kavkom", json=payload, headers={"Authorization": f"Bearer {KAVKOM_SECRET}"}
    )
    assert response.status_code == 200, response.json


def _waiting_on_a_lock(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def test_a_fold_held_by_a_killed_worker_is_done_by_another(  # type: ignore[no-untyped-def]
    client, hubspot, stack
) -> None:
    worker_a, worker_b = stack["workers"]
    call_id = "killed-outright-1"
    _post(client, "call__ringing_inbound.json", call_id)
    wait_until(lambda: call_row(call_id), timeout=30)

    engine = sa.create_engine(stack["db_url"], poolclass=sa.pool.NullPool)
    with engine.connect() as holder:
        transaction = holder.begin()
        holder.execute(
            sa.text("SELECT id FROM calls WHERE platform_call_id = :id FOR UPDATE"),
            {"id": call_id},
        )
        # The call ends; worker A takes the fold and waits for the row: it is mid-task.
        _post(client, "call__finished_inbound.json", call_id)
        wait_until(lambda: _waiting_on_a_lock(engine), timeout=30)
        worker_a.kill()
        transaction.rollback()
    engine.dispose()
    worker_b.start()

    row = wait_until(
        lambda: (r := call_row(call_id)) and r.crm_status == CrmStatus.SYNCED and r,
        timeout=60,
    )
    assert row.ended
    (record,) = calls_for(hubspot, NUMBER)
    assert record["id"] == row.crm_id
    assert record["properties"]["hs_call_direction"] == "INBOUND"
