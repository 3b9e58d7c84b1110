"""Console pages: the calls list (``/admin/calls``) and one call's story (``/admin/calls/<id>``).

The queries and the verdict live in ``worker/reports/call_story/``; this module turns request
parameters into a search, a bad one into a 400 with its reason, a merged leg into a
redirect to its call, and hands the rest to the templates.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from webhook_receiver.deliveries.auth import configured_secrets
from webhook_receiver.web.operator_auth import operator_required
from worker.core.events import Direction
from worker.reports import call_story

bp = Blueprint("console_calls", __name__, url_prefix="/admin")


def _mappings() -> Any:
    return current_app.extensions["callhook.mappings"]


def _platforms() -> dict[str, str]:
    """Platform id → display name, for the filter and the rows."""
    mappings = _mappings()
    names: dict[str, str] = getattr(mappings, "platform_names", {}) or {}
    return {p: names.get(p, p) for p in sorted(mappings.platforms)}


def _webhook_secrets() -> list[str]:
    """Every configured webhook secret's value (the mappings' ``auth.secret_envs``)."""
    return [s for m in _mappings().platforms.values() for s in configured_secrets(m.auth)]


def _helpers() -> dict[str, Any]:
    return {
        "stamp": call_story.stamp,
        "when": call_story.when,
        "duration": call_story.duration_text,
        "number": call_story.number_text,
        "platforms": _platforms(),
        "problems_url": _problems_url(),
    }


def _problems_url() -> str | None:
    endpoint = "console_problems.problems"
    return url_for(endpoint) if endpoint in current_app.view_functions else None


@bp.get("/calls")
@operator_required
def calls() -> ResponseReturnValue:
    form = {k: request.args.get(k, "")[:200] for k in call_story.FILTER_PARAMS}
    try:
        filters = call_story.parse_filters(request.args, _platforms())
    except call_story.FilterError as exc:
        # The page again, with the search as typed and why it cannot run: a 400, not a 500.
        return _calls_page(call_story.CallFilters(), None, form, problem=str(exc)), 400
    return _calls_page(filters, call_story.list_calls(filters), form)


def _calls_page(
    filters: call_story.CallFilters,
    page: call_story.CallPage | None,
    form: dict[str, str],
    problem: str | None = None,
) -> str:
    older = page and page.older
    return render_template(
        "console/calls.html",
        filters=filters,
        page=page or call_story.CallPage([], None),
        older=url_for(".calls", **filters.query_args(before=older)) if older else None,
        form=form,
        problem=problem,
        statuses=call_story.STATUSES,
        directions=[d.value for d in Direction],
        **_helpers(),
    )


@bp.get("/calls/<int:call_id>")
@operator_required
def call(call_id: int) -> ResponseReturnValue:
    root, moved = call_story.root_of(call_id)
    if root is None:
        abort(404, description=f"no call #{call_id}")
    if moved:
        flash(f"Call #{call_id} was a leg of this call and was merged into it: its deliveries "
              "are shown here.")  # fmt: skip
        return redirect(url_for(".call", call_id=root), code=303)
    story = call_story.call_story(root, _webhook_secrets())
    if story is None:
        abort(404, description=f"no call #{call_id}")
    return render_template("console/call.html", story=story, call=story.call, **_helpers())
