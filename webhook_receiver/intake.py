"""Accepting a parsed payload: map, store durably, enqueue after commit.

The webhook route and the listeners that hold a platform's stream open (Kavkom's
WebSocket) hand payloads to `ingest`, so both paths store, deduplicate and map
the same way. Stored before acknowledged; enqueued only after the commit; a broker
outage leaves the row for the outbox sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from webhook_receiver.mapping import MappingError, PlatformMapping, map_payload
from webhook_receiver.mapping.engine import payload_digest
from worker.db import get_engine
from worker.models import EventStatus, WebhookEvent
from worker.settings import get_settings
from worker.tasks import enqueue_event

log = logging.getLogger("callhook.webhook")


@dataclass
class Intake:
    """What happened to a payload: an HTTP status, a stable log key, a JSON body."""

    status: int
    key: str
    body: dict[str, Any] = field(default_factory=dict)


def _store(row: WebhookEvent) -> tuple[int, bool]:
    """Insert the event; (id, True) if new, (existing id, False) on a duplicate delivery."""
    engine = get_engine()
    try:
        with Session(engine) as session:
            session.add(row)
            session.commit()
            assert row.id is not None
            return row.id, True
    except IntegrityError:
        with Session(engine) as session:
            existing = session.exec(
                select(WebhookEvent.id).where(
                    WebhookEvent.platform == row.platform,
                    WebhookEvent.dedupe_key == row.dedupe_key,
                )
            ).one()
            assert existing is not None
            return existing, False


def _store_or_none(row: WebhookEvent) -> tuple[int | None, bool]:
    try:
        return _store(row)
    except OperationalError:
        log.error("webhook.store_failed platform=%s", row.platform)
        return None, False


UNAVAILABLE = Intake(
    503,
    "webhook.store_failed",
    # Not stored, so not accepted: a 503 tells the platform to deliver it again.
    {"error": "store_failed", "reason": "storage unavailable; retry later"},
)


def ingest(
    mapping: PlatformMapping,
    payload: Any,
    *,
    raw: bytes,
    method: str,
    content_type: str,
    query: str = "",
) -> Intake:
    """Map and store one authenticated, parsed payload; enqueue it when new."""
    platform = mapping.platform
    received = datetime.now(UTC)
    row = WebhookEvent(
        platform=platform,
        dedupe_key="",
        received_at=received,
        method=method,
        content_type=content_type,
        body=raw.decode("utf-8", errors="replace"),
        query=query,
    )
    try:
        result = map_payload(mapping, payload, default_region=get_settings().default_region)
    except MappingError as exc:
        row.dedupe_key = payload_digest(payload)
        row.status = EventStatus.UNMAPPED
        row.error = str(exc)
        event_id, _ = _store_or_none(row)
        if event_id is None:
            return UNAVAILABLE
        return Intake(
            422, "webhook.unmapped", {"error": "unmapped", "reason": str(exc), "id": event_id}
        )

    row.dedupe_key = result.dedupe_key
    if result.ignored:
        row.status = EventStatus.IGNORED
        row.error = result.ignored
    else:
        for event in result.events:
            if event.occurred_at is None:
                # The platform gave no time: when we received it is the best we know.
                event.occurred_at = received
        row.canonical = [e.to_json() for e in result.events]
    event_id, new = _store_or_none(row)
    if event_id is None:
        return UNAVAILABLE
    if not new:
        log.info("webhook.duplicate platform=%s id=%s", platform, event_id)
        return Intake(200, "webhook.duplicate", {"status": "duplicate", "id": event_id})
    if result.ignored:
        log.info("webhook.ignored platform=%s id=%s", platform, event_id)
        body = {"status": "ignored", "id": event_id, "reason": result.ignored}
        return Intake(200, "webhook.ignored", body)
    enqueued = enqueue_event(event_id)
    log.info("webhook.accepted platform=%s id=%s enqueued=%s", platform, event_id, enqueued)
    body = {"status": "accepted", "id": event_id, "events": len(result.events)}
    return Intake(200, "webhook.accepted", body)
