"""``/dry-run``: the requests the dry-run CRM recorded, newest first.

Only served with no HubSpot token, and only to a signed-in operator: it shows callers'
numbers and call bodies.
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue
from sqlmodel import Session, col, select

from webhook_receiver.web.operator_auth import operator_required
from worker.core.db import get_engine
from worker.core.models import DryRunRequest
from worker.core.settings import get_settings

bp = Blueprint("dry_run", __name__)


def recent_requests(limit: int = 100, call_id: int | None = None) -> list[DryRunRequest]:
    with Session(get_engine()) as session:
        stmt = select(DryRunRequest).order_by(col(DryRunRequest.id).desc()).limit(limit)
        if call_id is not None:
            stmt = stmt.where(DryRunRequest.call_id == call_id)
        return list(session.exec(stmt))


@bp.get("/dry-run")
@operator_required
def page() -> ResponseReturnValue:
    if not get_settings().dry_run:
        abort(404)
    raw = request.args.get("limit", "100")
    if not (len(raw) <= 4 and raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 1000):
        abort(400, description="limit must be a whole number from 1 to 1000")
    limit = int(raw)
    rows = recent_requests(limit=limit)
    return render_template(
        "dry_run.html",
        rows=[(r, json.dumps(r.body, indent=2, ensure_ascii=False)) for r in rows],
    )
