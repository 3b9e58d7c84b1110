"""``POST /webhooks/<platform>``: the fixed path every delivery takes.

size (413, webhook_receiver.web.body_limit) → known platform (404) → authentication (401)
→ format (415, kept) → parse (400, kept) → map (kept as unmapped: 200 or 422, as the
mapping's ``on_unmapped`` says) → store (duplicate → 200) → enqueue → 200.

Authentication comes before anything is parsed or stored: a delivery is kept (even
one that cannot be read, as ``unmapped``, for replay) only once its sender has proved
who it is; an unauthenticated one is refused and never stored.
Some platforms (KAZOO) disable a hook that answers anything but 200, so every
accepted delivery — new, duplicate, ignored or unmapped under ``on_unmapped:
accept`` — answers exactly 200. Each refusal is logged under a stable key, never
with the body or a secret.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from webhook_receiver.deliveries import auth
from webhook_receiver.deliveries.intake import ingest, keep_unreadable
from webhook_receiver.mapping import PlatformMapping
from webhook_receiver.mapping.payloads import (
    BadPayload,
    encode_query,
    payload_format,
    query_pairs,
    read_payload,
    without_param,
)
from worker.core.metrics import WEBHOOK_DELIVERIES

bp = Blueprint("webhooks", __name__)
log = logging.getLogger("callhook.webhook")


def refuse(status: int, key: str, reason: str, platform: str, **extra: Any) -> ResponseReturnValue:
    log.info("%s platform=%s status=%s reason=%s", key, platform, status, reason)
    # A platform the URL names but no mapping knows is counted as "unknown": the URL's
    # text as a label would let anyone create metrics without end.
    known = platform if platform in _platforms() else "unknown"
    WEBHOOK_DELIVERIES.inc(platform=known, result="refused", status=status)
    return jsonify(error=key.split(".", 1)[1], reason=reason, **extra), status


def _platforms() -> dict[str, PlatformMapping]:
    return current_app.extensions["callhook.mappings"].platforms


@bp.route("/webhooks/<platform>", methods=["POST", "GET"])
def receive(platform: str) -> ResponseReturnValue:
    mapping = _platforms().get(platform)
    if mapping is None:
        return refuse(
            404,
            "webhook.unknown_platform",
            f"no mapping file for platform {platform[:64]!r}",
            platform[:64],
        )
    # Size: the body is already bounded (body_limit, and Flask's MAX_CONTENT_LENGTH).
    raw = request.get_data(cache=True)
    problem = auth.check(mapping.auth, request)
    if problem is not None:
        return refuse(401, "webhook.auth_failed", problem, platform)

    secret_param = mapping.auth.param if mapping.auth.location == "query" else None
    method, content_type = request.method, request.mimetype or ""
    query = ""  # stored without the secret; when the query cannot be read, not at all
    try:
        pairs = without_param(query_pairs(request.query_string.decode("latin-1")), secret_param)
        query = encode_query(pairs)
        fmt = payload_format(
            platform, method, content_type, mapping.accept, mapping.any_content_type_is_json
        )
        payload = read_payload(fmt, raw, pairs)
    except BadPayload as exc:
        result = keep_unreadable(
            mapping, exc, raw=raw, method=method, content_type=content_type, query=query
        )
    else:
        result = ingest(
            mapping, payload, raw=raw, method=method, content_type=content_type, query=query
        )
    return jsonify(result.body), result.status
