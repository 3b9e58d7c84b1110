"""From a stored webhook to its calls: the plain functions behind the tasks.

Kept out of the task module so they run, and are tested, without a broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select, update

from worker.core.agents import AgentDirectory
from worker.core.db import session_scope
from worker.core.events import CallEvent, Stage
from worker.core.fold import fold_events
from worker.core.metrics import FOLD_LATENCY
from worker.core.models import Call, CrmStatus, EventStatus, WebhookEvent, utcnow
from worker.tasks.pops import PopAction, pop_actions

log = logging.getLogger("callhook.worker")

# Tries to fold one stored event before it is marked `failed` (kept, listed by
# `callhook events list --status failed`, replayable). Counted in the database, so the
# count survives Celery's retries, the outbox sweep's re-enqueues and killed workers.
MAX_FOLD_ATTEMPTS = 5
# How much of a failure is kept on the row.
MAX_ERROR_CHARS = 1000


@dataclass
class Processed:
    """What a stored event led to: calls due for a CRM sync, pops to make."""

    due: list[int] = field(default_factory=list)
    pops: list[PopAction] = field(default_factory=list)
    # When the delivery arrived (epoch seconds): a pop's latency is counted from it.
    received_at: float | None = None
    platform: str = ""


class FoldFailed(Exception):
    """Folding a stored event raised; the reason is on its row.

    `final` when this was its last attempt (the event is now `failed`); otherwise it
    stays `pending` and the task tries again later.
    """

    def __init__(self, event_id: int, attempts: int, reason: str, final: bool) -> None:
        # All four in `args`: the exception pickles and unpickles (Celery logs retries).
        super().__init__(event_id, attempts, reason, final)
        self.event_id = event_id
        self.attempts = attempts
        self.reason = reason
        self.final = final

    def __str__(self) -> str:
        return f"event {self.event_id}, attempt {self.attempts}: {self.reason}"


def _locked_event(session: Session, event_id: int) -> WebhookEvent | None:
    stmt = select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
    return session.exec(stmt.execution_options(populate_existing=True)).first()


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _begin_attempt(event_id: int) -> int | None:
    """Count one more attempt, committed before the fold runs; None when there is nothing
    to fold (not pending, or out of attempts: then it is marked failed here).

    Counting before the fold is what catches a fold that never returns an error: a
    worker killed by it each time still uses up the event's attempts.
    """
    with session_scope() as session:
        event = _locked_event(session, event_id)
        if event is None or event.status != EventStatus.PENDING:
            return None
        if event.attempts >= MAX_FOLD_ATTEMPTS:
            last = event.error or "the worker stopped during each attempt"
            event.status = EventStatus.FAILED
            event.error = f"gave up after {event.attempts} attempts: {last}"
            session.add(event)
            log.error("event.failed id=%s attempts=%s", event_id, event.attempts)
            return None
        event.attempts += 1
        session.add(event)
        return event.attempts


def _undo_attempt(event_id: int) -> None:
    """Give an attempt back: the database was unavailable, which is no fault of the event."""
    try:
        with session_scope() as session:
            event = _locked_event(session, event_id)
            if event is not None and event.status == EventStatus.PENDING and event.attempts > 0:
                event.attempts -= 1
                session.add(event)
    except OperationalError:  # still unavailable: the attempt stays counted
        log.warning("event.attempt_kept id=%s: database unavailable", event_id)


def _record_failure(event_id: int, attempts: int, exc: BaseException) -> FoldFailed:
    """Keep why the fold failed on the row; mark it failed on its last attempt."""
    reason = _reason(exc)
    final = attempts >= MAX_FOLD_ATTEMPTS
    with session_scope() as session:
        event = _locked_event(session, event_id)
        if event is not None and event.status == EventStatus.PENDING:
            event.error = f"gave up after {attempts} attempts: {reason}" if final else reason
            if final:
                event.status = EventStatus.FAILED
            session.add(event)
    log.error(
        "event.fold_failed id=%s attempt=%s/%s final=%s error=%s",
        event_id, attempts, MAX_FOLD_ATTEMPTS, final, type(exc).__name__,
    )  # fmt: skip
    return FoldFailed(event_id, attempts, reason, final)


def _canonical_events(canonical: Any) -> list[CallEvent]:
    """The stored canonical events, or ValueError when they are not (or no longer) valid."""
    if not isinstance(canonical, list):
        raise ValueError(f"expected a list of events, got {type(canonical).__name__}")
    return [CallEvent.from_json(data) for data in canonical]


def process_stored_event(
    event_id: int, agents: AgentDirectory | None = None, *, log_unended: bool = False
) -> Processed:
    """Fold a stored event into its calls; says which calls are due for a CRM sync.

    Safe to run twice for one event (a sweep may re-enqueue it): the event row is
    locked and a processed event is skipped. Each run counts an attempt; a fold that
    raises raises FoldFailed (the event stays pending for a retry, or is `failed`
    after MAX_FOLD_ATTEMPTS), so no event is retried forever. OperationalError (the
    database unavailable) is raised as is, and its attempt given back.
    """
    attempts = _begin_attempt(event_id)
    if attempts is None:
        return Processed()
    try:
        result = _fold_stored(event_id, agents, log_unended)
    except OperationalError:
        _undo_attempt(event_id)
        raise
    except Exception as exc:  # anything else: recorded, retried a bounded number of times
        raise _record_failure(event_id, attempts, exc) from exc
    if result.received_at is not None:  # folded and committed just now
        FOLD_LATENCY.observe_since(result.received_at, platform=result.platform)
    return result


def _fold_stored(event_id: int, agents: AgentDirectory | None, log_unended: bool) -> Processed:
    with session_scope() as session:
        event = _locked_event(session, event_id)
        if event is None or event.status != EventStatus.PENDING:
            return Processed()
        try:
            events = _canonical_events(event.canonical)
        except ValueError as exc:
            # Invalid now means invalid on every try: failed at once, kept, replayable.
            event.status = EventStatus.FAILED
            event.error = f"stored canonical event is invalid: {_reason(exc)}"
            session.add(event)
            log.error("event.invalid id=%s", event_id)
            return Processed()
        folded = fold_events(session, events, event_id, log_unended=log_unended)
        event.status = EventStatus.PROCESSED
        event.processed_at = utcnow()
        event.error = None
        session.add(event)
        received = event.received_at
        aware = received if received.tzinfo else received.replace(tzinfo=UTC)
        result = Processed(received_at=aware.timestamp(), platform=event.platform)
        for canonical, call in folded:
            assert call.id is not None
            if call.crm_status == CrmStatus.PENDING and call.id not in result.due:
                result.due.append(call.id)
            if agents is not None:
                result.pops.extend(pop_actions(call, canonical, agents))
        return result


def events_to_enqueue(grace: timedelta, stale: timedelta) -> list[int]:
    """Stored events never enqueued (broker was down), or enqueued long ago and still pending."""
    now = utcnow()
    with session_scope() as session:
        stmt = select(WebhookEvent.id).where(
            WebhookEvent.status == EventStatus.PENDING,
            (
                (
                    col(WebhookEvent.enqueued_at).is_(None)
                    & (col(WebhookEvent.received_at) < now - grace)
                )
                | (col(WebhookEvent.enqueued_at) < now - stale)
            ),
        )
        return [i for i in session.exec(stmt.order_by(col(WebhookEvent.id)).limit(1000)) if i]


def calls_to_sync(grace: timedelta) -> list[int]:
    """Ended calls still waiting for their CRM sync with no live lease (a task was lost)."""
    now = utcnow()
    with session_scope() as session:
        stmt = select(Call.id).where(
            Call.crm_status == CrmStatus.PENDING,
            col(Call.merged_into).is_(None),
            Call.updated_at < now - grace,
            (col(Call.crm_lease_until).is_(None)) | (col(Call.crm_lease_until) < now),
        )
        return [i for i in session.exec(stmt.order_by(col(Call.id)).limit(1000)) if i]


def mark_enqueued(event_ids: list[int]) -> None:
    if not event_ids:
        return
    # One statement for the whole batch (the publisher marks hundreds at once under load).
    with session_scope() as session:
        session.exec(
            update(WebhookEvent)
            .where(col(WebhookEvent.id).in_(event_ids))
            .values(enqueued_at=utcnow())
        )


def close_unended(after: timedelta, limit: int = 200) -> list[int]:
    """Store an `ended` event for calls silent for `after` (their end webhook was lost).

    The event goes through the normal path (stored, folded, logged), named as
    callhook's own, so the CRM record says the call was closed without its end.
    """
    now = utcnow()
    minutes = round(after.total_seconds() / 60)
    stored: list[int] = []
    with session_scope() as session:
        stale = session.exec(
            select(Call)
            .where(
                Call.ended == False,  # noqa: E712
                col(Call.merged_into).is_(None),
                Call.updated_at < now - after,
            )
            .order_by(col(Call.id))
            .limit(limit)
        ).all()
        for call in stale:
            event = CallEvent(
                platform=call.platform,
                call_id=call.platform_call_id,
                stage=Stage.ENDED,
                occurred_at=call.updated_at,  # the last thing heard of it
                variables={
                    "callhook_note": f"closed by callhook: no end received in {minutes} min"
                },
            )
            row = WebhookEvent(
                platform=call.platform,
                dedupe_key=f"callhook:close:{call.id}",
                method="SWEEP",
                body="{}",
                canonical=[event.to_json()],
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            stored.append(row.id)
    return stored
