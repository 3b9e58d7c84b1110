"""The HubSpot calling widget: callhook inside HubSpot's calling window.

HubSpot frames ``/hubspot/widget`` once the app's calling settings name it (see
``docs/hubspot-calling-widget.md``). The page follows the agent's card stream, as ``/agent``
does, and tells HubSpot about each inbound call through HubSpot's Calling Extensions SDK
(vendored in ``static/vendor``), so HubSpot itself shows the call and opens the caller's
record. HubSpot's click-to-call reaches the page as ``onDialNumber`` and goes on to
``POST /agent/call``.

One widget URL serves every agent of the portal, so the page itself carries no identity:
the agent signs in once inside the widget by pasting their personal link, and the browser
keeps its token (localStorage). ``/hubspot/widget/me`` checks a pasted link before it is kept.
As on ``/agent``, the widget sends the token in the ``X-Callhook-Agent`` header (never in a
URL), reads its stream with ``fetch()``, and renews the token through ``POST /agent/token``.

Every response says ``Cache-Control: no-store``: the page keeps a token, ``/me`` takes one.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template
from flask.typing import ResponseReturnValue

from webhook_receiver.web.agent_page import current_agent

bp = Blueprint("hubspot_widget", __name__)


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# Under the app's static folder; the version is in the name so that browsers never keep an
# old copy. Updating it: static/vendor/README.md.
SDK_SCRIPT = "vendor/calling-extensions-sdk-0.9.7.js"


@bp.get("/hubspot/widget")
def widget() -> ResponseReturnValue:
    return render_template("hubspot_widget.html", sdk_script=SDK_SCRIPT)


@bp.get("/hubspot/widget/me")
def me() -> ResponseReturnValue:
    """The agent a token belongs to, or 403 with the reason (the app's JSON error body)."""
    agent, _ = current_agent()
    return jsonify(email=agent.email, name=agent.name or agent.email)
