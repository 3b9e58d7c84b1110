"""The Problems page (``/admin/problems``): what an operator must fix, in one place.

Two lists, each with its fix beside it: calls whose CRM sync failed, with Retry
(`failed_syncs.py`), and deliveries the mapping could not read, grouped by platform and
reason, with Replay and a link to the sandbox (`unmapped.py`, `replay.py`,
`sandbox.py`). This module only gathers both for the page; the buttons' answers come
back here (`answers.py`).
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue
from sqlmodel import Session

from webhook_receiver.web.console.answers import MAX_BULK
from webhook_receiver.web.console.failed_syncs import MAX_FAILED_CALLS, failed_calls
from webhook_receiver.web.console.redacted import known_secrets
from webhook_receiver.web.console.unmapped import DELIVERIES_PER_GROUP, MAX_GROUPS, groups
from webhook_receiver.web.operator_auth import operator_required
from worker.core.db import get_engine
from worker.core.settings import get_settings
from worker.crm.mapping_files import MappingFiles

bp = Blueprint("console_problems", __name__, url_prefix="/admin")


def _loaded_files() -> MappingFiles:
    return current_app.extensions["callhook.mappings"]


@bp.get("/problems")
@operator_required
def problems() -> ResponseReturnValue:
    secrets = known_secrets(_loaded_files())
    with Session(get_engine()) as session:
        calls, calls_total = failed_calls(session)
        found = groups(session, secrets)
    return render_template(
        "console/problems.html",
        calls=calls,
        calls_total=calls_total,
        groups=found,
        limits={
            "calls": MAX_FAILED_CALLS,
            "groups": MAX_GROUPS,
            "per_group": DELIVERIES_PER_GROUP,
            "bulk": MAX_BULK,
        },
        mappings_dir=str(get_settings().mappings_dir),
    )
