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
from sqlmodel import Session, col, select

from worker.core.events import FINAL_RANK, STAGE_RANK, CallEvent, Outcome, Stage
from worker.core.models import Call, CallEventRecord, CrmStatus, utcnow

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
# Who called whom is the call's own leg's word: an agent's leg sees the call from the other
# side (Kwebbl reports the agent leg of an inbound call as "outbound").
ROOT_FIELDS = {"direction", "external_number", "external_number_raw", "company_number"}
# A leg's end is not the call's end (a queue agent who did not pick up), nor its outcome.
LEG_MAX_STAGE = Stage.TRANSFERRED
ROOT_ONLY_FIELDS = {"outcome"}


def _strength(event: CallEvent, name: str, root: bool) -> list[float]:
    """Which of two events wins a field: the further stage, then the *earlier* event.

    Earlier, because the first ``ringing`` tells who called whom; a repeated or
    late one must not rewrite it. Any total order would converge; this one is right.
    For the call's identity fields, an event of the call's own leg beats any other leg.
    """
    # Finite sentinels: JSON columns on PostgreSQL refuse Infinity.
    stamp = event.occurred_at.timestamp() if event.occurred_at else 1e15
    rank = (
        STAGE_RANK[event.stage] if root else min(STAGE_RANK[event.stage], STAGE_RANK[LEG_MAX_STAGE])
    )
    return [float(root if name in ROOT_FIELDS else 0), float(rank), -stamp]


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
    """Fold one event into `call` in memory (pure: no I/O).

    The event is of the call's own leg when its id is the call's; else of another leg
    (a KAZOO B leg, a bridged Kwebbl leg), which may name the agent and prove an answer
    but neither ends the call nor changes who called whom.
    """
    root = event.call_id == call.platform_call_id
    stage = event.stage if root or event.rank <= STAGE_RANK[LEG_MAX_STAGE] else LEG_MAX_STAGE
    if STAGE_RANK[stage] > STAGE_RANK[Stage(call.stage)]:
        call.stage = stage.value
    ranks = dict(call.field_ranks or {})
    for name in RANKED_FIELDS:
        value = getattr(event, name)
        if value is None or (name in ROOT_ONLY_FIELDS and not root):
            continue
        strength = _strength(event, name, root)
        held = list(ranks.get(name, [-1.0, 0.0, -1e16]))
        value = value.value if hasattr(value, "value") else value
        # Equal strength (same stage, same time, different values): the larger value wins,
        # so the result never depends on which of the two arrived last.
        if strength > held or (strength == held and str(value) > str(getattr(call, name))):
            setattr(call, name, value)
            ranks[name] = strength
    call.field_ranks = ranks

    started = event.started_at or (event.occurred_at if event.stage == Stage.RINGING else None)
    answered = event.answered_at or (event.occurred_at if event.stage == Stage.ANSWERED else None)
    # A CDR is sent when the call is over: its arrival time bounds the end of the call.
    # Another leg's end is not the call's.
    ended = None
    if root:
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


def sync_hash(call: Call) -> str:
    """What the CRM record is derived from: the folded state and the agent's wrap-up.

    A call without a wrap-up keeps the plain state hash, so records synced before wrap-ups
    existed are not all sent again.
    """
    digest = state_hash(call)
    wrap_up = (call.agent_outcome, call.agent_note, call.agent_wrapped_by)
    if not any(wrap_up):
        return digest
    text = json.dumps([digest, *wrap_up])
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


def _reset(call: Call) -> None:
    """Forget everything folded into `call`, before folding its events again."""
    call.stage = Stage.RINGING.value
    for name in (*RANKED_FIELDS, "started_at", "answered_at", "ended_at"):
        setattr(call, name, None)
    call.variables, call.field_ranks, call.ended = {}, {}, False


def _history(session: Session, call: Call) -> list[CallEvent]:
    rows = session.exec(
        select(CallEventRecord)
        .where(CallEventRecord.call_id == call.id)
        .order_by(col(CallEventRecord.id))
    )
    return [CallEvent.from_json(row.event) for row in rows]


def _merge(session: Session, leg: Call, into: Call) -> None:
    """`leg` had a life of its own before its link arrived: move its events into `into`."""
    assert leg.id is not None and into.id is not None
    moved = session.exec(select(CallEventRecord).where(CallEventRecord.call_id == leg.id)).all()
    for row in moved:
        row.call_id = into.id
        session.add(row)
    if leg.crm_id and not into.crm_id:
        # Already logged on its own: the call updates that record instead of adding one.
        into.crm_id, into.crm_synced_hash = leg.crm_id, None
    elif leg.crm_id:
        into.crm_error = f"leg {leg.platform_call_id} was logged on its own as {leg.crm_id}"
    leg.merged_into = into.id
    leg.crm_status = CrmStatus.MERGED
    _reset(leg)
    session.add(leg)
    session.flush()
    if moved:
        _reset(into)
        for event in _history(session, into):
            apply_event(into, event)


def _call_for(session: Session, event: CallEvent) -> tuple[Call, bool]:
    """The locked call an event folds into, creating and linking rows as needed.

    Every leg id has its own row, locked first, so two workers never race on one leg; a
    leg linked to a parent points there (`merged_into`) and its events follow. The flag
    says a leg was merged just now (the call changed even if this event adds nothing).
    """
    own = _lock_call(session, event.platform, event.call_id)
    parent_id = event.parent_call_id if event.parent_call_id != event.call_id else None
    if own.merged_into is not None:
        target = session.get(Call, own.merged_into, with_for_update=True, populate_existing=True)
        assert target is not None
        return target, False
    if parent_id is None:
        return own, False
    target = _lock_call(session, event.platform, parent_id)
    if target.merged_into is not None:  # the parent is itself a leg: join its call
        followed = session.get(
            Call, target.merged_into, with_for_update=True, populate_existing=True
        )
        assert followed is not None
        target = followed
    if target.id == own.id:
        return target, False
    _merge(session, own, target)
    return target, True


def fold_events(
    session: Session, events: list[CallEvent], webhook_event_id: int, *, log_unended: bool = False
) -> list[tuple[CallEvent, Call]]:
    """Fold events into their calls in the current transaction; returns each event's call.

    A call whose folded state changed after it ended (or at all, when the CRM file logs
    calls from their start) is marked for a CRM sync; one whose state did not change is
    left alone (duplicates cost nothing).
    """
    folded: list[tuple[CallEvent, Call]] = []
    for position, event in enumerate(events):
        call, merged = _call_for(session, event)
        assert call.id is not None
        before = "" if merged else state_hash(call)
        session.add(
            CallEventRecord(
                call_id=call.id,
                webhook_event_id=webhook_event_id,
                position=position,
                event=event.to_json(),
            )
        )
        apply_event(call, event)
        if state_hash(call) != before:
            call.updated_at = utcnow()
            if call.ended or log_unended:
                # Also for a call that failed permanently: new data is worth one more try.
                call.crm_status = CrmStatus.PENDING
        session.add(call)
        session.flush()
        folded.append((event, call))
    return folded
