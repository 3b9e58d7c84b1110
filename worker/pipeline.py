"""From a stored webhook to its calls: the plain functions behind the tasks.

Kept out of the task module so they run, and are tested, without a broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import select

from worker.agents import AgentDirectory
from worker.db import session_scope
from worker.events import CallEvent, Stage
from worker.fold import fold_events
from worker.models import Call, CrmStatus, EventStatus, WebhookEvent, utcnow
from worker.pops import PopAction, pop_actions

log = logging.getLogger("callhook.worker")


@dataclass
class Processed:
    """What a stored event led to: calls due for a CRM sync, pops to make."""

    due: list[int] = field(default_factory=list)
    pops: list[PopAction] = field(default_factory=list)


def process_stored_event(
    event_id: int, agents: AgentDirectory | None = None, *, log_unended: bool = False
) -> Processed:
    """Fold a stored event into its calls; says which calls are due for a CRM sync.

    Safe to run twice for one event (a sweep may re-enqueue it): the event row is
    locked and a processed event is skipped.
    """
    with session_scope() as session:
        stmt = select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
        event = session.exec(stmt.execution_options(populate_existing=True)).first()
        if event is None or event.status != EventStatus.PENDING:
            return Processed()
        try:
            events = [CallEvent.from_json(data) for data in event.canonical]
        except ValueError as exc:
            # A stored event that no longer validates is kept, visible and replayable.
            event.status = EventStatus.FAILED
            event.error = f"stored canonical event is invalid: {exc}"
            session.add(event)
            log.error("event.invalid id=%s", event_id)
            return Processed()
        folded = fold_events(session, events, event_id, log_unended=log_unended)
        event.status = EventStatus.PROCESSED
        event.processed_at = utcnow()
        session.add(event)
        result = Processed()
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
                (WebhookEvent.enqueued_at.is_(None) & (WebhookEvent.received_at < now - grace))  # type: ignore[union-attr]
                | (WebhookEvent.enqueued_at < now - stale)  # type: ignore[operator]
            ),
        )
        return [i for i in session.exec(stmt.order_by(WebhookEvent.id).limit(1000)) if i]


def calls_to_sync(grace: timedelta) -> list[int]:
    """Ended calls still waiting for their CRM sync with no live lease (a task was lost)."""
    now = utcnow()
    with session_scope() as session:
        stmt = select(Call.id).where(
            Call.crm_status == CrmStatus.PENDING,
            Call.merged_into.is_(None),  # type: ignore[union-attr]
            Call.updated_at < now - grace,
            (Call.crm_lease_until.is_(None)) | (Call.crm_lease_until < now),  # type: ignore[union-attr,operator]
        )
        return [i for i in session.exec(stmt.order_by(Call.id).limit(1000)) if i]


def mark_enqueued(event_ids: list[int]) -> None:
    if not event_ids:
        return
    with session_scope() as session:
        for event in session.exec(select(WebhookEvent).where(WebhookEvent.id.in_(event_ids))):  # type: ignore[union-attr]
            event.enqueued_at = utcnow()
            session.add(event)


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
                Call.merged_into.is_(None),  # type: ignore[union-attr]
                Call.updated_at < now - after,
            )
            .order_by(Call.id)
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
