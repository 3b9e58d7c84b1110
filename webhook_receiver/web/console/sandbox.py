"""The mapping sandbox (``/admin/sandbox``): try a payload against the mapping files.

Paste a payload (or open a stored delivery, redacted), choose the platform and how it is
sent, and read the canonical events and the HubSpot requests, or the mapping's reason,
as ``callhook mappings try`` prints them. Nothing is stored, nothing is sent. It reads
the files as they are on disk now, what a replay would use, so a fix can be tried before
the deliveries are replayed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template, request
from flask.typing import ResponseReturnValue
from sqlmodel import Session

from webhook_receiver.deliveries.sandbox import FORMAT_LABELS, FORMATS, TryResult, try_payload
from webhook_receiver.mapping import load_mappings
from webhook_receiver.mapping.payloads import body_format
from webhook_receiver.web.console.redacted import HIDDEN, known_secrets, redacted_body
from webhook_receiver.web.operator_auth import operator_required
from worker.core.db import get_engine
from worker.core.models import WebhookEvent
from worker.core.settings import ConfigError, get_settings
from worker.crm.mapping_files import MappingFiles

bp = Blueprint("console_sandbox", __name__, url_prefix="/admin")


def _loaded_files() -> MappingFiles:
    return current_app.extensions["callhook.mappings"]


def _fresh_files() -> tuple[MappingFiles, str | None]:
    """The mapping files as they are on disk now (what a replay would use), else the loaded
    ones with the reason the disk's do not load."""
    try:
        return load_mappings(get_settings().mappings_dir), None
    except ConfigError as exc:
        return (
            _loaded_files(),
            f"the mapping files on disk do not load, showing the loaded ones: {exc}",
        )


def _from_event(event_id: str, secrets: list[str]) -> dict[str, Any]:
    """The form prefilled with a stored delivery: its platform, format and redacted body."""
    try:
        number = int(event_id)
    except ValueError:
        return {"notice": f"{event_id[:20]!r} is not an event id"}
    with Session(get_engine()) as session:
        event = session.get(WebhookEvent, number)
    if event is None:
        return {"notice": f"no event {number}"}
    if event.method == "GET":
        fmt, raw = "query", event.query
    else:
        fmt, raw = body_format(event.content_type) or "json", event.body
    payload = redacted_body(raw, secrets)
    notice = f"Delivery {number} ({event.platform}, {event.method} {event.content_type or '-'})"
    if HIDDEN in payload and HIDDEN not in raw:
        notice += f"; secret-looking values are shown as {HIDDEN}"
    return {"platform": event.platform, "fmt": fmt, "payload": payload, "notice": notice}


@bp.route("/sandbox", methods=["GET", "POST"])
@operator_required
def sandbox() -> ResponseReturnValue:
    settings = get_settings()
    files, files_problem = _fresh_files()
    form: dict[str, Any] = {"platform": "", "fmt": "json", "payload": "", "notice": None}
    result: TryResult | None = None
    error: str | None = None
    source = request.form if request.method == "POST" else request.args
    if request.method == "GET" and request.args.get("event"):
        form.update(_from_event(request.args["event"], known_secrets(files)))
    elif request.method == "POST":
        form.update(
            platform=source.get("platform", ""),
            fmt=source.get("fmt", "json"),
            payload=source.get("payload", ""),
        )
    if form["payload"] or request.method == "POST":
        raw = str(form["payload"]).encode()
        if len(raw) > settings.max_body_bytes:
            error = f"the payload is over {settings.max_body_bytes} bytes (MAX_BODY_BYTES)"
        elif form["fmt"] not in FORMATS:
            error = f"choose a format among {', '.join(FORMAT_LABELS.values())}"
        elif not raw.strip():
            error = "paste a payload to try"
        else:
            result = try_payload(
                files, str(form["platform"]), raw, str(form["fmt"]), settings.default_region
            )
    return render_template(
        "console/sandbox.html",
        platforms=sorted(files.platforms),
        formats=FORMAT_LABELS,
        form=form,
        result=result,
        error=error,
        files_problem=files_problem,
        max_bytes=settings.max_body_bytes,
    )
