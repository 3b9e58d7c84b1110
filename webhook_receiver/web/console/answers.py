"""How the Problems page's buttons answer: to a browser with a message on the page, to a
script with JSON, and always within gunicorn's timeout.

Retry and Replay are plain form posts from the page, and the same URLs serve scripts
(``curl -X POST``), so each action answers through `answer`: a browser is sent back to
the Problems page (303) with the message flashed at the right section; a script gets the
status code and ``{"error", "reason"}`` it can act on. Which one asked is
`webhook_receiver.web.operator_auth.wants_html`, the rule the sign-in uses too.
"""

from __future__ import annotations

from typing import Any

from flask import flash, jsonify, redirect, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from webhook_receiver.web.operator_auth import wants_html

# "Replay all" and "Retry all" stop at whichever comes first: a page must answer well
# within gunicorn's 25 s timeout, and the operator presses again for the rest.
MAX_BULK = 500
BULK_SECONDS = 10.0


def back(anchor: str = "") -> WerkzeugResponse:
    return redirect(url_for("console_problems.problems") + anchor, code=303)


def answer(message: str, *, status: int = 200, error: str | None = None, anchor: str = "") -> Any:
    """A browser gets the message flashed on the problems page; a script gets JSON."""
    if wants_html():
        flash(message, "error" if error else "info")
        return back(anchor)
    if error:
        return jsonify(error=error, reason=message), status
    return jsonify(status="ok", message=message), status
