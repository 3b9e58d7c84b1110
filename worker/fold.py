"""Folding canonical events into the state of their call, whatever their order.

The fold is a join: applying the same events in any order, any number of times,
gives the same call. Each field remembers the rank of the stage that set it, so
a late ``ringing`` never overwrites what an ``ended`` event or the CDR said, and
the CDR's figures beat live estimates.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from worker.events import FINAL_RANK, STAGE_RANK, CallEvent, Outcome, Stage
from worker.models import Call, CrmStatus, utcnow

# Fields taken from the strongest event that carries them.
RANKED_FIELDS = (
    "direction",
    "external_number",
    "external_number_raw",
    "company_number",
    "agent",
    "duration_s",
    "talk_s",
    "outcome",
    "recording_url",
    "hangup_cause",
)


def _strength(event: CallEvent) -> list[float]:
    """Which of two events wins a field: the further stage, then the *earlier* event.

    Earlier, because the first ``ringing`` tells who called whom; a repeated or
    late one must not rewrite it. Any total order would converge; this one is right.
    """
    # Finite sentinels: JSON columns on PostgreSQL refuse Infinity.
    stamp = event.occurred_at.timestamp() if event.occurred_at else 1e15
    return [float(STAGE_RANK[event.stage]), -stamp]


def _earliest(current: datetime | None, new: datetime | None) -> datetime | None:
    if new is None:
        return current
    return new if current is None or new < current else current


def _latest(current: datetime | None, new: datetime | None) -> datetime | None:
    if new is None:
        return current
    return new if current is None or new > current else current


def infer_outcome(call: Call) -> Outcome | None:
    """The outcome of an ended call whose events did not state one.

    Answered if anything proves a conversation (answer time, talk time). A
    platform that reports only one duration and nothing about answering (the
    Kavkom CDR) is read as answered when that duration is positive.
    """
    if not call.ended:
        return None
    if call.answered_at is not None or (call.talk_s or 0) > 0:
        return Outcome.ANSWERED
    if call.talk_s is None and (call.duration_s or 0) > 0 and call.stage == Stage.CDR:
        return Outcome.ANSWERED
    return Outcome.NO_ANSWER


def apply_event(call: Call, event: CallEvent) -> None:
    """Fold one event into `call` in memory (pure: no I/O)."""
    rank = STAGE_RANK[event.stage]
    if rank > STAGE_RANK[Stage(call.stage)]:
        call.stage = event.stage.value
    ranks = dict(call.field_ranks or {})
    strength = _strength(event)
    for name in RANKED_FIELDS:
        value = getattr(event, name)
        if value is None:
            continue
        if strength >= list(ranks.get(name, [0.0, -1e16])):
            setattr(call, name, value.value if hasattr(value, "value") else value)
            ranks[name] = strength
    call.field_ranks = ranks

    started = event.started_at or (event.occurred_at if event.stage == Stage.RINGING else None)
    answered = event.answered_at or (event.occurred_at if event.stage == Stage.ANSWERED else None)
    # A CDR is sent when the call is over: its arrival time bounds the end of the call.
    ended = event.ended_at or (
        event.occurred_at if event.stage in (Stage.ENDED, Stage.CDR) else None
    )
    call.started_at = _earliest(call.started_at, started)
    call.answered_at = _earliest(call.answered_at, answered)
    call.ended_at = _latest(call.ended_at, ended)
    if event.variables:
        call.variables = {**(call.variables or {}), **event.variables}

    call.ended = STAGE_RANK[Stage(call.stage)] >= FINAL_RANK
    if "outcome" not in ranks:
        inferred = infer_outcome(call)
        call.outcome = inferred.value if inferred else None


def state_hash(call: Call) -> str:
    """What the CRM record is derived from; equal hashes mean nothing new to send."""
    data = {
        name: getattr(call, name)
        for name in (*RANKED_FIELDS, "stage", "started_at", "answered_at", "ended_at", "variables")
    }
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _lock_call(session: Session, platform: str, call_id: str) -> Call:
    """Create the call row if needed, then hold it locked until commit."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = utcnow()
    session.execute(
        insert(Call)
        .values(
            platform=platform,
            platform_call_id=call_id,
            stage=Stage.RINGING.value,
            variables={},
            field_ranks={},
            ended=False,
            updated_at=now,
            crm_status=CrmStatus.WAITING,
        )
        .on_conflict_do_nothing(index_elements=["platform", "platform_call_id"])
    )
    statement = (
        select(Call)
        .where(Call.platform == platform, Call.platform_call_id == call_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(statement).one()


def fold_events(session: Session, events: list[CallEvent]) -> list[Call]:
    """Fold events into their calls in the current transaction; returns the calls touched.

    A call whose folded state changed after it ended is marked for a CRM sync;
    one whose state did not change is left alone (duplicates cost nothing).
    """
    touched: dict[int, Call] = {}
    for event in events:
        call = _lock_call(session, event.platform, event.call_id)
        before = state_hash(call)
        apply_event(call, event)
        if state_hash(call) != before:
            call.updated_at = utcnow()
            if call.ended:
                # Also for a call that failed permanently: new data is worth one more try.
                call.crm_status = CrmStatus.PENDING
        session.add(call)
        session.flush()
        assert call.id is not None
        touched[call.id] = call
    return list(touched.values())
