"""Replaying a stored webhook: map it again with today's mapping file, then process it.

This is how a delivery kept as ``unmapped`` (its body unreadable, or the mapping
unable to read it) or ``failed`` (the worker gave up folding it) is recovered once
the mapping file or the bug is fixed, without asking the platform to send it again.
It is read exactly as the receiver reads a delivery (``payloads``), so a replay
succeeds precisely when the same delivery would be accepted today.

Only events that were never folded are replayed: ``unmapped``, ``failed`` and
``ignored``. A ``processed`` event is already in its call (folding it again would
record its events twice), and a ``pending`` one is already queued.
"""

from __future__ import annotations

from webhook_receiver.mapping import MappingError, load_mappings, map_payload
from webhook_receiver.mapping.payloads import BadPayload, read_delivery
from worker.core.db import session_scope
from worker.core.models import EventStatus, WebhookEvent
from worker.core.settings import get_settings
from worker.tasks.celery_app import configure
from worker.tasks.publish import enqueue_event

REPLAYABLE = (EventStatus.UNMAPPED, EventStatus.FAILED, EventStatus.IGNORED)
# Rows callhook wrote itself (a call closed because its end never came): no body to map,
# their canonical event is queued again as it is.
OWN_METHODS = ("SWEEP",)


def replay_event(event_id: int) -> str:
    settings = get_settings()
    files = load_mappings(settings.mappings_dir)
    with session_scope() as session:
        event = session.get(WebhookEvent, event_id)
        if event is None:
            raise LookupError(f"no event {event_id}")
        if event.status not in REPLAYABLE:
            raise LookupError(
                f"event {event_id} is {event.status}: only "
                + ", ".join(REPLAYABLE)
                + " events can be replayed"
            )
        mapping = files.platforms.get(event.platform)
        if event.method in OWN_METHODS:
            count = len(event.canonical or [])
        else:
            if mapping is None:
                raise LookupError(f"no mapping file for platform {event.platform!r}")
            try:
                payload = read_delivery(
                    mapping, event.method, event.content_type, event.body.encode(), event.query
                )
                result = map_payload(mapping, payload, default_region=settings.default_region)
            except (BadPayload, MappingError) as exc:
                event.error = str(exc)
                session.add(event)
                return f"event {event_id} still cannot be mapped: {exc}"
            if result.ignored:
                event.status, event.error, event.canonical = (
                    EventStatus.IGNORED,
                    result.ignored,
                    [],
                )
                session.add(event)
                return f"event {event_id} is ignored: {result.ignored}"
            for e in result.events:
                e.occurred_at = e.occurred_at or event.received_at
            event.canonical = [e.to_json() for e in result.events]
            count = len(result.events)
        event.status, event.error, event.processed_at = EventStatus.PENDING, None, None
        event.attempts = 0  # a fresh set of tries for the fixed mapping or code
        session.add(event)
    configure()
    queued = enqueue_event(event_id)
    return f"event {event_id} mapped to {count} event(s); " + (
        "queued" if queued else "broker down: the outbox sweep will queue it"
    )
