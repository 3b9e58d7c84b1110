"""Replaying a stored webhook: map it again with today's mapping file, then process it.

This is how a payload refused with 422 (kept as ``unmapped``) is recovered after
the mapping file is fixed, without asking the platform to send it again.
"""

from __future__ import annotations

from webhook_receiver.mapping import MappingError, load_mappings, map_payload
from webhook_receiver.payloads import BadPayload, nest, parse_form, parse_json
from worker.celery_app import configure
from worker.db import session_scope
from worker.models import EventStatus, WebhookEvent
from worker.settings import get_settings


def replay_event(event_id: int) -> str:
    settings = get_settings()
    files = load_mappings(settings.mappings_dir)
    with session_scope() as session:
        event = session.get(WebhookEvent, event_id)
        if event is None:
            raise LookupError(f"no event {event_id}")
        mapping = files.platforms.get(event.platform)
        if mapping is None:
            raise LookupError(f"no mapping file for platform {event.platform!r}")
        raw = event.body.encode()
        try:
            if event.method == "GET":
                from urllib.parse import parse_qsl

                payload = nest(parse_qsl(event.query, keep_blank_values=True))
            elif event.content_type == "application/x-www-form-urlencoded":
                payload = parse_form(raw)
            else:
                payload = parse_json(raw)
            result = map_payload(mapping, payload, default_region=settings.default_region)
        except (BadPayload, MappingError) as exc:
            event.error = str(exc)
            session.add(event)
            return f"event {event_id} still cannot be mapped: {exc}"
        if result.ignored:
            event.status, event.error, event.canonical = EventStatus.IGNORED, result.ignored, []
            session.add(event)
            return f"event {event_id} is ignored: {result.ignored}"
        for e in result.events:
            e.occurred_at = e.occurred_at or event.received_at
        event.canonical = [e.to_json() for e in result.events]
        event.status, event.error, event.processed_at = EventStatus.PENDING, None, None
        session.add(event)
    configure()
    from worker.tasks import enqueue_event

    queued = enqueue_event(event_id)
    return f"event {event_id} mapped to {len(result.events)} event(s); " + (
        "queued" if queued else "broker down: the outbox sweep will queue it"
    )
