"""Calls whose end never comes are closed; logging from the start marks live calls due."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from tests.conftest import TEST_SECRET_KEY, Environment, fresh_database
from tests.test_call_legs import deliver, ev
from worker.core.db import session_scope
from worker.core.models import Call, CrmStatus, utcnow
from worker.tasks.pipeline import close_unended, process_stored_event


@pytest.fixture(scope="module")
def database(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    tmp: Path = tmp_path_factory.mktemp(f"lifecycle-{db_kind}")
    env = Environment()
    env.set(
        {
            "DATABASE_URL": fresh_database(db_kind, tmp),
            "INSTANCE_DIR": str(tmp),
            "SECRET_KEY": TEST_SECRET_KEY,
        }
    )
    yield
    env.restore()


def call(call_id: str) -> Call:
    with session_scope() as session:
        return session.exec(select(Call).where(Call.platform_call_id == call_id)).one()


def test_a_call_whose_end_was_lost_is_closed_and_logged_as_such(database: None) -> None:
    deliver([ev("lost-end", "ringing", 0, direction="inbound", external_number="+33612345639")])
    deliver([ev("still-live", "ringing", 0, direction="inbound")])
    with session_scope() as session:  # two hours of silence for the first call only
        row = session.exec(select(Call).where(Call.platform_call_id == "lost-end")).one()
        row.updated_at = utcnow() - timedelta(hours=2, minutes=1)
        session.add(row)
    stored = close_unended(timedelta(hours=2))
    assert len(stored) == 1
    processed = process_stored_event(stored[0])
    closed = call("lost-end")
    assert closed.ended and closed.outcome == "no_answer"
    assert closed.variables["callhook_note"] == "closed by callhook: no end received in 120 min"
    assert processed.due == [closed.id] and closed.crm_status == CrmStatus.PENDING
    assert not call("still-live").ended
    assert close_unended(timedelta(hours=2)) == []  # closed once, not every sweep


def test_logging_from_the_start_marks_a_ringing_call_due(database: None) -> None:
    from worker.core.fold import fold_events
    from worker.core.models import WebhookEvent

    event = ev("from-start", "ringing", 0, direction="inbound")
    with session_scope() as session:
        row = WebhookEvent(platform="p", dedupe_key="from-start", method="POST", body="{}",
                           canonical=[event.to_json()])  # fmt: skip
        session.add(row)
        session.flush()
        assert row.id is not None
        ((_, folded),) = fold_events(session, [event], row.id, log_unended=True)
        assert folded.crm_status == CrmStatus.PENDING and not folded.ended
