"""A webhook arriving after the database dropped callhook's connections is still stored.

The pool does not ping before each use (a round trip a webhook would pay every time):
a connection the server dropped (a restart, a failover) fails its first statement. The
receiver's store then tries once more on a fresh connection, so the delivery is stored
and answered 200, not refused with a 503 a platform may never retry.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.test_call_logging_e2e import AUTH, cdr
from worker.core.db import get_engine


def test_a_delivery_after_the_server_dropped_every_connection_is_stored(client, stack) -> None:  # type: ignore[no-untyped-def]
    if stack["db_kind"] != "postgres":
        pytest.skip("SQLite has no server to drop connections")
    warm = client.post("/webhooks/kavkom", json=cdr("reconnect-warm"), headers=AUTH)
    assert warm.status_code == 200  # the pool now holds an open connection
    # What a restart does to every open session, this process's pooled ones included.
    other = sa.create_engine(stack["db_url"], poolclass=sa.pool.NullPool)
    with other.connect() as conn:
        dropped = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name NOT LIKE 'celery%'"
            )
        ).scalar()
    other.dispose()
    assert dropped and dropped >= 1
    answer = client.post("/webhooks/kavkom", json=cdr("reconnect-after"), headers=AUTH)
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "accepted"
    with get_engine().connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM webhook_events WHERE id = :id"), {"id": answer.json["id"]}
        ).scalar()
    assert stored == 1
