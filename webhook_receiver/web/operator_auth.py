"""Operator sign-in: every page that shows call data to an operator sits behind it.

The mechanism is the agents' (worker/core/agent_links.py): ``callhook admin link EMAIL`` prints a
signed, expiring (``OPERATOR_LINK_TTL_HOURS``), revocable link. Opening it turns the link
into an HttpOnly, SameSite=Lax cookie and redirects to a URL without the token, so the
token leaves the address bar, the history and any Referer at once. Each request checks
the cookie's link row, so ``callhook admin revoke EMAIL`` signs the operator out
everywhere at the next click. No shared static password exists to leak in a URL.

Cross-site requests cannot act for a signed-in operator: the cookie is SameSite=Lax, and
any state-changing request must also come from this origin (its ``Origin`` header).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
)
from flask.typing import ResponseReturnValue
from sqlmodel import col

from worker.core.agent_links import OPERATOR, LinkHolder, holder
from worker.core.models import utcnow

bp = Blueprint("operator", __name__)
log = logging.getLogger("callhook.operator")

COOKIE = "callhook_operator"
SIGN_IN_HINT = "sign in with a link printed by `callhook admin link EMAIL` on the server"
F = TypeVar("F", bound=Callable[..., Any])


def signed_in_operator() -> LinkHolder | None:
    """The operator whose sign-in cookie this request carries, if it is still valid."""
    if "operator" not in g:
        g.operator = holder(request.cookies.get(COOKIE, ""), OPERATOR)
    return g.operator


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser's cross-site request (curl, a same-origin GET)
        return True
    return urlsplit(origin).netloc == request.host


def operator_required(view: F) -> F:
    """Refuse a request without a valid operator sign-in (401 with how to sign in)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if signed_in_operator() is None:
            return _sign_in_needed()
        if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin():
            abort(403, description="cross-site request refused")
        return view(*args, **kwargs)

    return cast(F, wrapped)  # functools.wraps: the same view, behind the sign-in check


def wants_html() -> bool:
    """Whether the client is a browser (answer with a page) rather than a script (JSON).

    The one rule for every operator answer (this sign-in, the console's buttons): HTML only
    when the Accept header prefers it to JSON; a tie (``*/*``, or no Accept at all) goes to
    JSON. Browsers always name ``text/html`` first, on a link and on a form post alike
    (``*/*`` only at a lower quality); ``*/*`` alone is what curl, ``requests`` and most
    HTTP libraries send, and a script needs the status code and a JSON reason, not a
    redirect to a page with a flashed message.
    """
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _sign_in_needed() -> Response:
    if wants_html():
        response = make_response(render_template("operator_sign_in.html", hint=SIGN_IN_HINT), 401)
    else:
        response = jsonify(error="sign_in_required", reason=SIGN_IN_HINT)
        response.status_code = 401
    return response


def _local_path(target: str | None) -> str:
    """Only a path on this site: an open redirect would lend it to phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/admin"
    return target


@bp.get("/admin/signin")
def sign_in() -> ResponseReturnValue:
    token = request.args.get("t", "")
    found = holder(token, OPERATOR)
    if found is None:
        log.info("operator.sign_in_refused")
        abort(403, description="this sign-in link is invalid, expired or revoked; " + SIGN_IN_HINT)
    log.info("operator.signed_in email=%s", found.email)
    response = redirect(_local_path(request.args.get("next")), code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(1, int((found.expires_at - utcnow()).total_seconds())),
        httponly=True,
        secure=request.is_secure,
        samesite="Lax",
        path="/",
    )
    return response


@bp.post("/admin/signout")
@operator_required
def sign_out() -> ResponseReturnValue:
    response = redirect("/admin", code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@bp.get("/admin")
@operator_required
def home() -> ResponseReturnValue:
    operator = signed_in_operator()
    assert operator is not None
    return render_template("console/home.html", counts=_overview_counts())


def _overview_counts() -> dict[str, int]:
    """What the overview says at a glance: today's calls, and what needs the operator."""
    from datetime import datetime, time

    from sqlalchemy import func
    from sqlmodel import Session, select

    from worker.core.db import get_engine
    from worker.core.models import Call, CrmStatus, EventStatus, WebhookEvent

    midnight = datetime.combine(utcnow().date(), time.min, tzinfo=utcnow().tzinfo)
    top = col(Call.merged_into).is_(None)
    with Session(get_engine()) as session:

        def count(*where: Any, model: Any = Call) -> int:
            return int(session.exec(select(func.count()).select_from(model).where(*where)).one())

        return {
            "calls_today": count(top, col(Call.started_at) >= midnight),
            "logged_today": count(
                top,
                col(Call.started_at) >= midnight,
                col(Call.crm_status).in_((CrmStatus.SYNCED, CrmStatus.DRY_RUN)),
            ),
            "failed": count(top, Call.crm_status == CrmStatus.FAILED),
            "unmapped": count(WebhookEvent.status == EventStatus.UNMAPPED, model=WebhookEvent),
        }
