"""Nothing loops forever in the worker: an event it cannot fold is `failed` after
MAX_FOLD_ATTEMPTS tries, with the reason, listed and replayable.

The attempts are counted on the row (`webhook_events.attempts`), not by Celery: the outbox
sweep enqueues a stale pending event again as a new task, and a worker killed mid-fold
loses its task's retry count, but neither can reset the row's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlmodel import Session, select

from tests.conftest import KAVKOM_SECRET, load_fixture, wait_until
from tests.unmapped import stored
from webhook_receiver.cli.main import cli
from worker.core.db import get_engine, session_scope
from worker.core.models import Call, CrmStatus, EventStatus, WebhookEvent
from worker.tasks.pipeline import MAX_FOLD_ATTEMPTS, process_stored_event

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}


def sweeps_done(worker_log: Path) -> int:
    """How many outbox sweeps the test's worker has finished, from its log."""
    text = worker_log.read_text(errors="replace")
    return sum(
        "callhook.sweep_outbox[" in line and " succeeded " in line for line in text.splitlines()
    )


def cdr(call_id: str) -> dict[str, Any]:
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload["callUuid"] = call_id
    return payload


def test_an_event_that_always_fails_to_fold_ends_failed_then_replays(
    client, hubspot, stack
) -> None:  # type: ignore[no-untyped-def]
    # A call row this version cannot read: written by a newer callhook whose deploy was rolled
    # back (a stage it added). Folding any event into it raises, every time.
    with session_scope() as session:
        session.add(Call(platform="kavkom", platform_call_id="fa-1", stage="parked"))
    response = client.post("/webhooks/kavkom", json=cdr("fa-1"), headers=AUTH)
    assert response.status_code == 200 and response.json["status"] == "accepted"
    event_id = response.json["id"]

    row = wait_until(lambda: (r := stored(event_id)).status != EventStatus.PENDING and r, 60)
    assert row.status == EventStatus.FAILED
    assert row.attempts == MAX_FOLD_ATTEMPTS
    assert row.error == (
        f"gave up after {MAX_FOLD_ATTEMPTS} attempts: ValueError: 'parked' is not a valid Stage"
    )
    listed = CliRunner().invoke(cli, ["events", "list", "--status", "failed"])
    assert f"{event_id:>6} " in listed.output and "'parked' is not a valid Stage" in listed.output

    # Two more outbox sweeps run (every second here): a failed event stays failed.
    sweeps = sweeps_done(stack["worker"].log)
    wait_until(lambda: sweeps_done(stack["worker"].log) >= sweeps + 2, timeout=30)
    assert (stored(event_id).status, stored(event_id).attempts) == (
        EventStatus.FAILED,
        MAX_FOLD_ATTEMPTS,
    )

    # The operator repairs the row, then replays: fresh attempts, folded, logged once.
    with session_scope() as session:
        call = session.exec(select(Call).where(Call.platform_call_id == "fa-1")).one()
        call.stage = "ringing"
        session.add(call)
    replayed = CliRunner().invoke(cli, ["events", "replay", str(event_id)])
    assert replayed.exit_code == 0 and "queued" in replayed.output, replayed.output
    wait_until(lambda: stored(event_id).status == EventStatus.PROCESSED, timeout=30)
    assert stored(event_id).attempts == 1 and stored(event_id).error is None

    def synced() -> bool:
        with Session(get_engine()) as session:
            call = session.exec(select(Call).where(Call.platform_call_id == "fa-1")).one()
            return call.crm_status == CrmStatus.SYNCED

    wait_until(synced, timeout=30)


def test_attempts_used_up_by_workers_that_died_mid_fold_end_it_failed(stack) -> None:  # type: ignore[no-untyped-def]
    # Each attempt is counted before the fold runs: a fold that kills its worker (and so
    # records no error) still uses one up, and the next try gives up.
    with session_scope() as session:
        row = WebhookEvent(platform="kavkom", dedupe_key="fa-died", method="POST", body="{}",
                           canonical=[], attempts=MAX_FOLD_ATTEMPTS)  # fmt: skip
        session.add(row)
        session.flush()
        event_id = row.id
    assert event_id is not None
    assert process_stored_event(event_id).due == []
    row = stored(event_id)
    assert row.status == EventStatus.FAILED
    assert row.error == (
        f"gave up after {MAX_FOLD_ATTEMPTS} attempts: the worker stopped during each attempt"
    )


def test_stored_events_that_cannot_be_read_fail_at_once(stack) -> None:  # type: ignore[no-untyped-def]
    for n, canonical in enumerate([None, {"call_id": "x"}, [{"platform": "kavkom"}]]):
        with session_scope() as session:
            row = WebhookEvent(platform="kavkom", dedupe_key=f"fa-bad-{n}", method="POST",
                               body="{}", canonical=canonical)  # fmt: skip
            session.add(row)
            session.flush()
            event_id = row.id
        assert event_id is not None
        process_stored_event(event_id)
        row = stored(event_id)
        assert row.status == EventStatus.FAILED, canonical
        assert row.error is not None and row.error.startswith("stored canonical event is invalid")
        assert row.attempts == 1  # no retry can make it valid
