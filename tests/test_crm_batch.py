"""Calls logged in batches: a flush's few requests, and exactly once through its failures.

Against the fake HubSpot (which answers batches as HubSpot does: results out of order, a
207 naming a refused input by its ``objectWriteTraceId``, a batch counted once) and a real
database: the adapter's batch path (`HubSpotCrm.log_calls`), then the flush that claims
due calls from the database (`call_logging.sync_call`), with one bad input, a 429 on a
batch, a lost answer and a worker killed mid-batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from sqlmodel import Session, select

from tests.conftest import Environment, RedisServer, base_env, fresh_database
from tests.fake_hubspot import FakeHubSpot
from tests.test_hubspot_adapter import adapter, snapshot
from tests.test_hubspot_policies import configured
from worker.core.db import get_engine, session_scope
from worker.core.models import Call, CrmStatus, CrmSyncAttempt, DryRunRequest, utcnow
from worker.crm.base import CallSnapshot, LogResult, PermanentCrmError, TransientCrmError
from worker.crm.contact_cache import RedisContactCache
from worker.crm.hubspot import HubSpotCrm
from worker.tasks import call_logging
from worker.tasks.call_logging import sync_call

CREATE = "/crm/v3/objects/calls/batch/create"


@pytest.fixture
def fake(hubspot: FakeHubSpot) -> Iterator[FakeHubSpot]:
    hubspot.reset()
    yield hubspot
    hubspot.reset()


def cached(fake: FakeHubSpot, redis_server: RedisServer) -> HubSpotCrm:
    crm = adapter(fake)
    client = redis_lib.Redis.from_url(redis_server.url)
    client.flushall()
    crm.cache = RedisContactCache(client, hit_s=300, miss_s=30)
    crm.locks = client
    return crm


def paths(fake: FakeHubSpot) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in fake.requests()]


def by_external(fake: FakeHubSpot) -> dict[str, dict[str, Any]]:
    return {c["properties"]["hs_call_external_id"]: c for c in fake.calls()}


def calls(n: int, **changes: Any) -> list[CallSnapshot]:
    return [snapshot(f"b-{i}", f"+3361234{5700 + i}", id=i + 1, **changes) for i in range(n)]


# -- the adapter's batch path --------------------------------------------------------------


def test_a_flush_logs_many_calls_in_a_few_requests_each_on_its_own_record(
    fake: FakeHubSpot,
) -> None:
    contacts = {i: fake.add_contact(firstname=f"C{i}", phone=f"06 12 34 57 0{i}") for i in (0, 2)}
    missed = {3, 4}
    batch = [
        snapshot(f"b-{i}", f"+3361234570{i}", id=i + 1,
                 outcome="no_answer" if i in missed else "answered")
        for i in range(6)
    ]  # fmt: skip

    results = configured(fake, missed_call_task__enabled=True).log_calls(batch)

    # One search for the six numbers, one create with the associations inline, one task
    # batch for the two missed calls: 3 requests for 6 calls.
    assert paths(fake) == [
        "POST /crm/v3/objects/contacts/search",
        "POST /crm/v3/objects/calls/batch/create",
        "POST /crm/v3/objects/tasks/batch/create",
    ]
    logged = by_external(fake)
    for call in batch:
        result = results[call.id]
        assert isinstance(result, LogResult) and result.action == "create"
        record = logged[call.external_id]
        # Matched by trace id, not by position (the fake answers results reversed).
        assert record["id"] == result.crm_id
        expected = contacts.get(call.id - 1)
        assert record["associations"].get("contacts", []) == ([expected] if expected else [])
        assert result.contact_id == expected
        assert (result.task_id is not None) == (call.id - 1 in missed)
    tasks = {t["id"]: t for t in fake.tasks()}
    assert set(tasks) == {results[i + 1].task_id for i in missed}  # type: ignore[union-attr]


def test_updates_of_many_calls_go_out_as_one_batch_update(fake: FakeHubSpot) -> None:
    crm = adapter(fake)
    created = crm.log_calls(calls(3))
    ids = {cid: r.crm_id for cid, r in created.items() if isinstance(r, LogResult)}
    assert len(ids) == 3
    before = len(fake.requests())

    later = [
        replace(call, duration_s=99, crm_id=ids[call.id], crm_contact_id=None) for call in calls(3)
    ]
    updated = crm.log_calls(later)

    assert paths(fake)[before:] == [
        "POST /crm/v3/objects/contacts/search",
        "POST /crm/v3/objects/calls/batch/update",
    ]
    assert all(isinstance(r, LogResult) and r.action == "update" for r in updated.values())
    assert {c["properties"]["hs_call_duration"] for c in fake.calls()} == {"99000"}


def test_one_bad_input_is_that_calls_error_and_the_others_are_logged(fake: FakeHubSpot) -> None:
    batch = calls(4)
    fake.reject_input("calls", "hs_call_external_id", batch[1].external_id)

    results = adapter(fake).log_calls(batch)

    bad = results[batch[1].id]
    assert isinstance(bad, PermanentCrmError) and bad.nothing_created is True
    assert "was not one of the allowed options" in str(bad)
    assert all(isinstance(results[c.id], LogResult) for c in batch if c is not batch[1])
    assert sorted(by_external(fake)) == sorted(c.external_id for c in batch if c is not batch[1])


def test_a_429_on_the_batch_is_every_members_transient_error_and_nothing_is_made(
    fake: FakeHubSpot,
) -> None:
    fake.fail_next_batch(429, object_type="calls", retry_after=2)
    results = adapter(fake).log_calls(calls(3))
    for result in results.values():
        assert isinstance(result, TransientCrmError)
        assert (result.status, result.retry_after) == (429, 2.0)
    assert fake.calls() == []


def test_a_lost_batch_answer_is_found_again_by_one_in_search(fake: FakeHubSpot) -> None:
    batch = calls(3)
    fake.lose_responses(1, CREATE)
    lost = adapter(fake).log_calls(batch)
    assert all(isinstance(r, TransientCrmError) and r.status == 504 for r in lost.values())
    made = {c["properties"]["hs_call_external_id"]: c["id"] for c in fake.calls()}
    assert len(made) == 3
    before = len(fake.requests())

    again = adapter(fake).log_calls([replace(c, create_in_doubt=True) for c in batch])

    assert paths(fake)[before:] == [
        "POST /crm/v3/objects/contacts/search",
        "POST /crm/v3/objects/calls/search",
        "POST /crm/v3/objects/calls/batch/update",
    ]
    for call in batch:
        result = again[call.id]
        assert isinstance(result, LogResult) and result.action == "recover"
        assert result.crm_id == made[call.external_id]
    assert len(fake.calls()) == 3  # exactly once


def test_one_search_splits_back_per_number_with_the_country_checked(
    fake: FakeHubSpot, redis_server: RedisServer
) -> None:
    # 06 12 34 58 01 in France and +44 612345801 share the national digits.
    french = fake.add_contact(firstname="Fr", phone="06 12 34 58 01")
    english = fake.add_contact(firstname="En", phone="+44 612345801")
    other = fake.add_contact(firstname="Other", phone="+33612345802")
    crm = cached(fake, redis_server)
    found = crm.contacts_for_numbers(
        ["+33612345801", "+44612345801", "+33612345802", "+33699999999"]
    )
    assert [c.id for c in found["+33612345801"]] == [french]
    assert [c.id for c in found["+44612345801"]] == [english]
    assert [c.id for c in found["+33612345802"]] == [other]
    assert found["+33699999999"] == []
    assert paths(fake) == ["POST /crm/v3/objects/contacts/search"]
    # Hits and misses are remembered: the next flush asks nothing.
    crm.contacts_for_numbers(["+33612345801", "+33699999999"])
    assert len(fake.requests()) == 1


# -- the flush: the database is the queue --------------------------------------------------


@pytest.fixture(scope="module")
def database(
    redis_server: RedisServer, hubspot: FakeHubSpot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("crm-batch")
    env = base_env(fresh_database("sqlite", tmp), redis_server.url, tmp / "instance", hubspot)
    environment = Environment()
    environment.set(env)
    yield tmp
    environment.restore()


@pytest.fixture
def flush(database: Path, fake: FakeHubSpot, redis_server: RedisServer) -> HubSpotCrm:
    with session_scope() as session:
        for model in (CrmSyncAttempt, DryRunRequest, Call):
            for row in session.exec(select(model)):
                session.delete(row)
    return cached(fake, redis_server)


def ended_calls(n: int, prefix: str, **values: Any) -> list[int]:
    ids = []
    with session_scope() as session:
        for i in range(n):
            call = Call(
                platform="kavkom", platform_call_id=f"{prefix}-{i}", stage="cdr", ended=True,
                direction="inbound", external_number=f"+3361234{5900 + i}", outcome="answered",
                started_at=datetime(2026, 3, 18, 12, 0, tzinfo=UTC), duration_s=30,
                crm_status=CrmStatus.PENDING, **values,
            )  # fmt: skip
            session.add(call)
            session.flush()
            assert call.id is not None
            ids.append(call.id)
    return ids


def rows(ids: list[int]) -> list[Call]:
    with Session(get_engine()) as session:
        return [c for c in session.exec(select(Call).order_by(Call.id)) if c.id in ids]  # type: ignore[arg-type]


def attempts(call_id: int) -> list[CrmSyncAttempt]:
    with Session(get_engine()) as session:
        stmt = select(CrmSyncAttempt).where(CrmSyncAttempt.call_id == call_id)
        return list(session.exec(stmt.order_by(CrmSyncAttempt.id)))  # type: ignore[arg-type]


def expire_backoff(ids: list[int]) -> None:
    with session_scope() as session:
        for call in session.exec(select(Call).where(Call.id.in_(ids))):  # type: ignore[union-attr]
            call.crm_lease_until = utcnow() - timedelta(seconds=1)
            session.add(call)


def test_one_task_flushes_every_due_call_each_with_its_attempt_and_requests(
    flush: HubSpotCrm, fake: FakeHubSpot
) -> None:
    ids = ended_calls(5, "due")

    outcome = sync_call(ids[0], lambda _: flush, dry_run=False)

    assert outcome.state == "synced"
    assert paths(fake) == [
        "POST /crm/v3/objects/contacts/search",
        "POST /crm/v3/objects/calls/batch/create",
    ]
    logged = by_external(fake)
    for call in rows(ids):
        assert call.crm_status == CrmStatus.SYNCED and call.crm_lease_until is None
        assert logged[f"callhook:kavkom:{call.platform_call_id}"]["id"] == call.crm_id
        assert call.id is not None
        (attempt,) = attempts(call.id)
        assert attempt.ok and attempt.action == "create"
        shared = {(r["method"], r["path"]): r for r in attempt.requests or []}
        assert shared[("POST", CREATE)]["calls"] == 5
    # A second task for a call of that flush finds nothing to do.
    assert sync_call(ids[3], lambda _: flush, dry_run=False).state == "unchanged"
    assert len(fake.requests()) == 2


def test_a_bad_input_is_retried_alone_fails_alone_and_blocks_nobody(
    flush: HubSpotCrm, fake: FakeHubSpot
) -> None:
    ids = ended_calls(4, "bad")
    fake.reject_input("calls", "hs_call_external_id", "callhook:kavkom:bad-2")

    sync_call(ids[0], lambda _: flush, dry_run=False)

    by_id = {c.id: c for c in rows(ids)}
    bad = by_id[ids[2]]
    assert bad.crm_status == CrmStatus.FAILED and bad.crm_id is None
    assert "was not one of the allowed options" in (bad.crm_error or "")
    assert bad.crm_create_sent_at is None  # refused: nothing made, safe to create later
    assert all(by_id[i].crm_status == CrmStatus.SYNCED for i in ids if i != ids[2])
    assert len(fake.calls()) == 3
    # Tried in the batch (a 207), then alone (a 400): both on the bad call's attempt, and
    # the lone request on no other call's.
    (attempt,) = attempts(ids[2])
    sent = [(r["path"], r["status"]) for r in attempt.requests or []]
    assert (CREATE, 207) in sent and ("/crm/v3/objects/calls", 400) in sent
    for other in (i for i in ids if i != ids[2]):
        (ok,) = attempts(other)
        assert all(r["path"] != "/crm/v3/objects/calls" for r in ok.requests or [])


def test_a_429_on_a_batch_sends_every_member_back_without_burning_its_retries(
    flush: HubSpotCrm, fake: FakeHubSpot
) -> None:
    ids = ended_calls(3, "limited")
    for _ in range(call_logging.MAX_SYNC_ATTEMPTS + 1):
        fake.fail_next_batch(429, object_type="calls", retry_after=1)
        outcome = sync_call(ids[0], lambda _: flush, dry_run=False)
        assert outcome.state == "retry" and outcome.retry_in is not None
        for call in rows(ids):
            # Back to due after the wait, not in doubt (HubSpot did nothing), not failed.
            assert call.crm_status == CrmStatus.PENDING and call.crm_create_sent_at is None
            assert call.crm_lease_until is not None  # its backoff: no flush takes it before
        expire_backoff(ids)
    assert fake.calls() == []

    assert sync_call(ids[0], lambda _: flush, dry_run=False).state == "synced"
    assert [c.crm_status for c in rows(ids)] == [CrmStatus.SYNCED] * 3
    assert len(fake.calls()) == 3


def test_a_lost_batch_answer_leaves_the_calls_in_doubt_and_the_next_flush_finds_them(
    flush: HubSpotCrm, fake: FakeHubSpot
) -> None:
    ids = ended_calls(3, "lost")
    fake.lose_responses(1, CREATE)
    assert sync_call(ids[0], lambda _: flush, dry_run=False).state == "retry"
    assert all(c.crm_create_sent_at is not None and c.crm_id is None for c in rows(ids))
    expire_backoff(ids)

    assert sync_call(ids[1], lambda _: flush, dry_run=False).state == "synced"

    made = by_external(fake)
    assert len(fake.calls()) == 3  # exactly once
    for call in rows(ids):
        assert made[f"callhook:kavkom:{call.platform_call_id}"]["id"] == call.crm_id
        assert attempts(call.id or 0)[-1].action == "recover"
    assert paths(fake).count("POST /crm/v3/objects/calls/search") == 1


def test_a_worker_killed_mid_batch_is_recovered_exactly_once(
    flush: HubSpotCrm, fake: FakeHubSpot
) -> None:
    ids = ended_calls(4, "killed")
    # A worker claims the calls, sends the batch create, and dies before storing anything.
    _, claimed = call_logging._claim(None, "dead-worker", log_unended=False, hold_s=0)
    assert {c.snapshot.id for c in claimed} == set(ids)
    flush.log_calls([c.snapshot for c in claimed])
    assert len(fake.calls()) == 4
    # Its leases keep every other flush away until they expire.
    assert sync_call(ids[0], lambda _: flush, dry_run=False).state == "busy"
    expire_backoff(ids)

    assert sync_call(ids[0], lambda _: flush, dry_run=False).state == "synced"

    assert len(fake.calls()) == 4
    made = by_external(fake)
    for call in rows(ids):
        assert call.crm_status == CrmStatus.SYNCED
        assert made[f"callhook:kavkom:{call.platform_call_id}"]["id"] == call.crm_id


def test_a_worker_killed_before_sending_costs_one_search_and_creates_once(
    flush: HubSpotCrm, fake: FakeHubSpot
) -> None:
    ids = ended_calls(2, "early")
    call_logging._claim(None, "dead-worker", log_unended=False, hold_s=0)  # then dies
    expire_backoff(ids)
    assert sync_call(ids[0], lambda _: flush, dry_run=False).state == "synced"
    assert len(fake.calls()) == 2
    assert paths(fake).count("POST /crm/v3/objects/calls/search") == 1


def test_a_held_call_comes_due_on_a_grid_so_one_window_shares_a_flush() -> None:
    hold = 2.0
    base = datetime(2026, 3, 18, 12, 0, 0, tzinfo=UTC)
    due = {call_logging._held_until(base + timedelta(seconds=s), hold) for s in (0.1, 0.9, 1.7)}
    assert due == {base + timedelta(seconds=4)}
    assert call_logging._held_until(base + timedelta(seconds=2.5), hold) == base + timedelta(
        seconds=6
    )


def test_the_dry_run_keeps_each_calls_requests_with_its_call(
    flush: HubSpotCrm, fake: FakeHubSpot
) -> None:
    from worker.crm import factory
    from worker.crm.dry_run import DryRunTransport

    ids = ended_calls(3, "dry")
    dry = lambda call_id: factory._adapter(DryRunTransport(call_id), cached=False)  # noqa: E731
    assert sync_call(ids[0], dry, dry_run=True).state == "synced"
    with Session(get_engine()) as session:
        stored = list(session.exec(select(DryRunRequest)))
    assert {r.call_id for r in stored if r.path == "/crm/v3/objects/calls"} == set(ids)
    assert [c.crm_status for c in rows(ids)] == [CrmStatus.DRY_RUN] * 3
    assert fake.requests() == []


def test_a_whole_batch_400_on_update_blocks_nobody_the_bad_call_fails_alone(
    flush: HubSpotCrm, fake: FakeHubSpot
) -> None:
    ids = ended_calls(3, "upd")
    sync_call(ids[0], lambda _: flush, dry_run=False)
    with session_scope() as session:  # a CDR's later data for every call
        for call in session.exec(select(Call).where(Call.id.in_(ids))):  # type: ignore[union-attr]
            call.duration_s = 75
            call.crm_status = CrmStatus.PENDING
            session.add(call)
    # HubSpot refuses the update batch whole (an invalid value in one input, no 207).
    fake.reject_input("calls", "hs_call_external_id", "callhook:kavkom:upd-1")
    before = len(fake.requests())

    sync_call(ids[0], lambda _: flush, dry_run=False)

    sent = paths(fake)[before:]
    assert sent[0] == "POST /crm/v3/objects/calls/batch/update"
    assert sorted(p.split("/")[-1] for p in sent[1:]) == sorted(
        c.crm_id or "" for c in rows(ids)
    )  # then each call alone
    by_id = {c.id: c for c in rows(ids)}
    assert by_id[ids[1]].crm_status == CrmStatus.FAILED
    assert [by_id[i].crm_status for i in (ids[0], ids[2])] == [CrmStatus.SYNCED] * 2
    durations = {c["properties"]["hs_call_external_id"]: c["properties"]["hs_call_duration"]
                 for c in fake.calls()}  # fmt: skip
    assert durations == {
        "callhook:kavkom:upd-0": "75000",
        "callhook:kavkom:upd-1": "30000",
        "callhook:kavkom:upd-2": "75000",
    }
