"""``POST /webhooks/<platform>``: the fixed path every delivery takes.

size (413) → content type (415) → known platform (404) → authentication (401)
→ parse (400) → map (422, kept) → store (duplicate → 200) → enqueue → 200.

Some platforms (KAZOO) disable a hook that answers anything but 200, so every
accepted delivery — new, duplicate or ignored — answers exactly 200. Each
refusal is logged under a stable key, never with the body or a secret.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from webhook_receiver import auth
from webhook_receiver.intake import ingest
from webhook_receiver.mapping import PlatformMapping
from webhook_receiver.payloads import (
    BadPayload,
    body_format,
    nest,
    parse_form,
    parse_json,
    strip_param,
)

bp = Blueprint("webhooks", __name__)
log = logging.getLogger("callhook.webhook")


def refuse(status: int, key: str, reason: str, platform: str, **extra: Any):  # type: ignore[no-untyped-def]
    log.info("%s platform=%s status=%s reason=%s", key, platform, status, reason)
    return jsonify(error=key.split(".", 1)[1], reason=reason, **extra), status


def _platforms() -> dict[str, PlatformMapping]:
    return current_app.extensions["callhook.mappings"].platforms


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

    result = ingest(
        mapping,
        payload,
        raw=raw,
        method=request.method,
        content_type=request.mimetype or "",
        query=strip_param(
            request.query_string.decode("latin-1"),
            mapping.auth.param if mapping.auth.location == "query" else None,
        ),
    )
    if result.status >= 400:
        log.info("%s platform=%s status=%s reason=%s", result.key, platform, result.status,
                 result.body["reason"])  # fmt: skip
    return jsonify(result.body), result.status
