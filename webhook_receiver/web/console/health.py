"""Console pages: health (is every platform still sending, is the pipeline moving).

The facts are computed by `worker.reports.health_facts`, each bounded in time, so this page
answers within about two seconds even with Redis down or the database locked: a source
that fails or does not answer shows "unknown: <reason>" on its own line.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue

from webhook_receiver.web.operator_auth import operator_required
from worker.core.models import utcnow
from worker.reports.health_facts import health_facts

bp = Blueprint("console_health", __name__, url_prefix="/admin")


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """ "3 min ago", "2 h 5 min ago", "4 d 1 h ago": how long a time is past, roughly."""
    if when is None:
        return "never"
    return span((now or utcnow()) - when) + " ago"


def span(delta: timedelta | None) -> str:
    """A duration in the largest two units that matter to an operator."""
    if delta is None:
        return "-"
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"


@bp.get("/health")
@operator_required
def health() -> ResponseReturnValue:
    platforms = current_app.extensions["callhook.mappings"].platforms
    facts = health_facts(platforms)
    return render_template(
        "console/health.html", facts=facts, ago=lambda t: ago(t, facts.now), span=span
    )
