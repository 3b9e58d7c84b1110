"""Connecting the company's Kwebbl account: the OAuth 2 authorization code grant, in a browser.

An administrator runs ``callhook kwebbl connect-link`` and opens the link it prints
(``/connect/kwebbl?k=...``: signed, 30 minutes, good for this only). The page puts a random
nonce in a cookie and sends the browser to Kwebbl's ``/authorize`` with the signed nonce as
``state``. Kwebbl sends the browser back to ``/connect/kwebbl/callback`` with a ``code``;
callhook accepts it only with a state it signed less than 10 minutes ago for the nonce of
this very browser (a forged or replayed callback cannot attach someone else's Kwebbl
account), trades the code for tokens and stores them encrypted (``worker.telephony
.kwebbl_oauth``).

The pages are HTML for a person; refusals say what happened and what to do next. Nothing
logged here carries a code, a state or a token.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, redirect, render_template, request
from flask.typing import ResponseReturnValue

from worker.core.redaction import short_text
from worker.core.settings import get_settings
from worker.telephony import kwebbl_oauth
from worker.telephony.kwebbl_oauth import KwebblAuthError

bp = Blueprint("kwebbl_connect", __name__)
log = logging.getLogger("callhook.kwebbl")

STATE_COOKIE = "callhook_kwebbl_state"

# Kwebbl Realtime API, "Access not granted": the error codes Kwebbl may send back, in plain words.
AUTHORIZE_ERRORS = {
    "access_denied": "The Kwebbl user did not grant callhook access.",
    "invalid_grant": "Kwebbl did not accept the login credentials.",
    "invalid_request": "Kwebbl found the authorization request invalid.",
    "unauthorized_client": "Kwebbl does not let this application use this sign-in method.",
    "unsupported_response_type": "Kwebbl does not support the requested response type.",
    "server_error": "Kwebbl ran into an error.",
}


def _redirect_uri() -> str:
    """The callback URL; Kwebbl must have it registered for the application."""
    base = get_settings().public_base_url.rstrip("/") or request.host_url.rstrip("/")
    return base + kwebbl_oauth.CALLBACK_PATH


def _page(template: str, http_status: int, **context: object) -> Response:
    response = Response(render_template(template, **context), status=http_status)
    # Nothing here may be cached, nor leak the URL (it holds the admin link or a code).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _refused(http_status: int, title: str, message: str, next_step: str) -> Response:
    response = _page(
        "kwebbl_refused.html", http_status, title=title, message=message, next_step=next_step
    )
    response.delete_cookie(STATE_COOKIE, path=kwebbl_oauth.CONNECT_PATH)
    return response


START_AGAIN = (
    "Start again from a fresh admin link: `callhook kwebbl connect-link` prints one "
    "(it works for 30 minutes)."
)


@bp.get(kwebbl_oauth.CONNECT_PATH)
def start() -> ResponseReturnValue:
    if not kwebbl_oauth.connect_link_is_valid(request.args.get("k", "")):
        log.info("kwebbl.connect_link_refused")
        return _refused(
            403,
            "This link does not work",
            "Connecting Kwebbl needs an administrator's link, and this one is missing, "
            "forged or older than 30 minutes.",
            "An administrator runs `callhook kwebbl connect-link` on the server and opens "
            "the link it prints.",
        )
    state, nonce = kwebbl_oauth.new_state()
    try:
        url = kwebbl_oauth.authorize_url(_redirect_uri(), state)
    except KwebblAuthError as exc:
        return _refused(500, "Kwebbl is not set up on this server", exc.message, START_AGAIN)
    response = redirect(url, code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    # Lax: the cookie still comes back on Kwebbl's top-level redirect to the callback.
    response.set_cookie(
        STATE_COOKIE,
        nonce,
        max_age=kwebbl_oauth.STATE_MAX_AGE_S,
        path=kwebbl_oauth.CONNECT_PATH,
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
    )
    log.info("kwebbl.connect_started")
    return response


@bp.get(kwebbl_oauth.CALLBACK_PATH)
def callback() -> ResponseReturnValue:
    error = request.args.get("error")
    if error:
        # Nothing is exchanged, so the state needs no check to show this page.
        log.info("kwebbl.connect_not_granted error=%s", short_text(error)[:40])
        said = short_text(request.args.get("error_description"))
        known = AUTHORIZE_ERRORS.get(
            error, f"Kwebbl answered with the error {short_text(error)!r}."
        )
        return _refused(
            403 if error == "access_denied" else 400,
            "Kwebbl was not connected",
            known + (f" Kwebbl says: {said}" if said else ""),
            "Sign in to Kwebbl as an admin user and grant the access callhook asks for: "
            + START_AGAIN,
        )
    problem = kwebbl_oauth.state_problem(
        request.args.get("state"), request.cookies.get(STATE_COOKIE)
    )
    if problem:
        log.warning("kwebbl.connect_state_refused")
        return _refused(400, "This sign-in cannot be completed", problem, START_AGAIN)
    code = request.args.get("code")
    if not code:
        return _refused(
            400, "This sign-in cannot be completed", "Kwebbl sent no code back.", START_AGAIN
        )
    try:
        status = kwebbl_oauth.exchange_code(code, _redirect_uri())
    except KwebblAuthError as exc:
        return _refused(502, "Kwebbl was not connected", exc.message, START_AGAIN)
    response = _page("kwebbl_connected.html", 200, status=status)
    response.delete_cookie(STATE_COOKIE, path=kwebbl_oauth.CONNECT_PATH)
    return response
