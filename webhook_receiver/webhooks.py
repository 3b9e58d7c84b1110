"""``POST /webhooks/<platform>``: the fixed path every delivery takes.

size (413) → content type (415) → known platform (404) → authentication (401)
→ parse (400) → map (422, kept) → store (duplicate → 200) → enqueue → 200.

Some platforms (KAZOO) disable a hook that answers anything but 200, so every
accepted delivery — new, duplicate or ignored — answers exactly 200. Each
refusal is logged under a stable key, never with the body or a secret.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from webhook_receiver import auth
from webhook_receiver.mapping import MappingError, PlatformMapping, map_payload
from webhook_receiver.mapping.engine import payload_digest
from webhook_receiver.payloads import (
    BadPayload,
    body_format,
    nest,
    parse_form,
    parse_json,
    strip_param,
)
from worker.db import get_engine
from worker.models import EventStatus, WebhookEvent
from worker.settings import get_settings
from worker.tasks import enqueue_event

bp = Blueprint("webhooks", __name__)
log = logging.getLogger("callhook.webhook")


def refuse(status: int, key: str, reason: str, platform: str, **extra: Any):  # type: ignore[no-untyped-def]
    log.info("%s platform=%s status=%s reason=%s", key, platform, status, reason)
    return jsonify(error=key.split(".", 1)[1], reason=reason, **extra), status


def _platforms() -> dict[str, PlatformMapping]:
    return current_app.extensions["callhook.mappings"].platforms


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


@bp.route("/webhooks/<platform>", methods=["POST", "GET"])
def receive(platform: str):  # type: ignore[no-untyped-def]
    # Size: Flask enforces MAX_CONTENT_LENGTH while reading; the 413 handler answers.
    raw = request.get_data(cache=True)
    fmt = "query" if request.method == "GET" else body_format(request.mimetype)
    mapping = _platforms().get(platform)
    if fmt is None and mapping is not None and mapping.any_content_type_is_json:
        fmt = "json"
    if fmt is None:
        return refuse(
            415,
            "webhook.unsupported_media_type",
            f"content type {request.mimetype or '(none)'!r} is not JSON or form-encoded",
            platform,
        )
    if mapping is None:
        return refuse(
            404, "webhook.unknown_platform", f"no mapping file for platform {platform!r}", platform
        )
    if fmt not in mapping.accept:
        return refuse(
            415,
            "webhook.unsupported_media_type",
            f"{platform} accepts {', '.join(mapping.accept)}, not {fmt}",
            platform,
        )
    problem = auth.check(mapping.auth, request)
    if problem is not None:
        return refuse(401, "webhook.auth_failed", problem, platform)

    try:
        if fmt == "json":
            payload = parse_json(raw)
        elif fmt == "form":
            payload = parse_form(raw)
        else:
            secret_param = mapping.auth.param if mapping.auth.location == "query" else None
            pairs = [(k, v) for k, v in request.args.items(multi=True) if k != secret_param]
            payload = nest(pairs)
    except BadPayload as exc:
        return refuse(400, "webhook.bad_body", str(exc), platform)

    received = datetime.now(UTC)
    settings = get_settings()
    row = WebhookEvent(
        platform=platform,
        dedupe_key="",
        received_at=received,
        method=request.method,
        content_type=request.mimetype or "",
        body=raw.decode("utf-8", errors="replace"),
        query=strip_param(
            request.query_string.decode("latin-1"),
            mapping.auth.param if mapping.auth.location == "query" else None,
        ),
    )
    try:
        result = map_payload(mapping, payload, default_region=settings.default_region)
    except MappingError as exc:
        row.dedupe_key = payload_digest(payload)
        row.status = EventStatus.UNMAPPED
        row.error = str(exc)
        event_id, _ = _store_or_503(row)
        if event_id is None:
            return _unavailable(platform)
        return refuse(422, "webhook.unmapped", str(exc), platform, id=event_id)

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
    event_id, new = _store_or_503(row)
    if event_id is None:
        return _unavailable(platform)
    if not new:
        log.info("webhook.duplicate platform=%s id=%s", platform, event_id)
        return jsonify(status="duplicate", id=event_id), 200
    if result.ignored:
        log.info("webhook.ignored platform=%s id=%s", platform, event_id)
        return jsonify(status="ignored", id=event_id, reason=result.ignored), 200
    enqueued = enqueue_event(event_id)
    log.info("webhook.accepted platform=%s id=%s enqueued=%s", platform, event_id, enqueued)
    return jsonify(status="accepted", id=event_id, events=len(result.events)), 200


def _store_or_503(row: WebhookEvent) -> tuple[int | None, bool]:
    try:
        return _store(row)
    except OperationalError:
        log.error("webhook.store_failed platform=%s", row.platform)
        return None, False


def _unavailable(platform: str):  # type: ignore[no-untyped-def]
    # Not stored, so not accepted: a 503 tells the platform to deliver it again.
    return refuse(503, "webhook.store_failed", "storage unavailable; retry later", platform)
