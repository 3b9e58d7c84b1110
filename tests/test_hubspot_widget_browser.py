"""The HubSpot calling widget in a real browser, framed by HubSpot's own host code.

A stand-in "HubSpot" page on another origin loads the same vendored Calling Extensions SDK
and runs its ``IFrameManager`` in host mode, as HubSpot does, around an iframe on
``/hubspot/widget``. It sends SYNC and records every message the widget sends
(``window.__fromWidget``). Both ends of the postMessage protocol are the SDK's own code; the
test adds only what HubSpot's page puts in SYNC besides it (portal, user, frame location).

What HubSpot hears: the widget initialised and signed in; for a ringing call from a known
contact, INCOMING_CALL (no engagement: callhook logs the call) and NAVIGATE_TO_RECORD to
that contact; CALL_ANSWERED, then CALL_ENDED; a colleague's pick-up ends the call as
CANCELED. HubSpot's click-to-call (DIAL_NUMBER) becomes ``POST /agent/call``; a refusal's
reason is shown to the agent, a success becomes OUTGOING_CALL_STARTED (no engagement either).
The sign-in survives a reload of HubSpot's page; signing out forgets it. The widget sends the
agent's token in the X-Callhook-Agent header, never in a URL.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium, screenshot  # noqa: F401
from tests.conftest import ROOT, Environment, LiveServer
from tests.test_screen_pop import _pages_per_agent, live, post  # noqa: F401  (a fixture)
from webhook_receiver.web.hubspot_widget import SDK_SCRIPT, bp
from worker.core.agent_links import create_link

pytestmark = needs_chromium

PORTAL_ID = 26123456
# What HubSpot's SYNC carries besides hostUrl (IFrameManager.onMessage reads these). The
# remote without the separate calling window: the setting docs/hubspot-calling-widget.md gives.
SYNC = {"portalId": PORTAL_ID, "userId": 4242, "ownerId": 77,
        "iframeLocation": "remote", "usesCallingWindow": False}  # fmt: skip
WAIT_MS = 20_000

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>HubSpot (stand-in)</title>
<script src="/sdk.js"></script></head>
<body><div id="calling-widget"></div>
<script>
"use strict";
window.__fromWidget = [];
const host = new self.IFrameManager({
  iFrameOptions: {src: __WIDGET_URL__, width: "400px", height: "600px",
                  hostElementSelector: "#calling-widget"},
  debugMode: false,
  onMessageHandler: message => window.__fromWidget.push(message),
});
// The SDK's host sends SYNC with hostUrl only; HubSpot's adds the portal and the user.
const send = host.sendMessage.bind(host);
host.sendMessage = (message, callback) =>
  send(message.type === "SYNC" ? Object.assign({}, message, __SYNC__) : message, callback);
window.host = host;
</script></body></html>
"""


class HubSpotHost:
    """The stand-in HubSpot page, on its own port: a different origin from the widget's."""

    def __init__(self, widget_url: str) -> None:
        self.page = HOST_PAGE.replace("__WIDGET_URL__", json.dumps(widget_url)).replace(
            "__SYNC__", json.dumps(SYNC)
        )
        self.sdk = (ROOT / "webhook_receiver" / "web" / "static" / SDK_SCRIPT).read_bytes()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/":
            response = Response(self.page, mimetype="text/html")
        elif request.path == "/sdk.js":
            response = Response(self.sdk, mimetype="text/javascript")
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def widget_server(live_server: LiveServer) -> LiveServer:
    # Until webhook_receiver/__init__.py registers the blueprint itself. Flask allows it
    # only before the app's first request: this module's live_server has served none yet.
    if "hubspot_widget" not in live_server.app.blueprints:
        live_server.app.register_blueprint(bp)
    return live_server


@pytest.fixture(scope="module")
def hubspot_host(widget_server: LiveServer) -> Iterator[HubSpotHost]:
    host = HubSpotHost(f"{widget_server.url}/hubspot/widget")
    # This host stands in for app.hubspot.com: the widget's CSP lets only it frame the page.
    environment = Environment()
    environment.set({"HUBSPOT_FRAME_ORIGINS": host.url.rstrip("/")})
    yield host
    environment.restore()
    host.close()


def sent(page: Any, kind: str) -> list[dict[str, Any]]:
    """The messages of one type the widget sent to the host, oldest first."""
    return page.evaluate("kind => window.__fromWidget.filter(m => m.type === kind)", kind)


def wait_for(page: Any, kind: str, call: str | None = None) -> dict[str, Any]:
    """The first message of `kind` (for that externalCallId), waiting for it."""
    page.wait_for_function(
        """([kind, call]) => window.__fromWidget.some(m => m.type === kind
             && (call === null || (m.data && m.data.externalCallId === call)))""",
        arg=[kind, call],
        timeout=WAIT_MS,
    )
    return next(
        m for m in sent(page, kind) if call is None or m["data"].get("externalCallId") == call
    )


def test_widget_page_and_vendored_sdk_are_served(widget_server: LiveServer) -> None:
    page = requests.get(f"{widget_server.url}/hubspot/widget", timeout=10)
    assert page.status_code == 200
    assert f'src="/static/{SDK_SCRIPT}"' in page.text
    sdk = requests.get(f"{widget_server.url}/static/{SDK_SCRIPT}", timeout=10)
    assert sdk.status_code == 200
    assert "javascript" in sdk.headers["Content-Type"]
    assert sdk.content == (ROOT / "webhook_receiver" / "web" / "static" / SDK_SCRIPT).read_bytes()
    assert page.headers["Cache-Control"] == "no-store"
    refused = requests.get(
        f"{widget_server.url}/hubspot/widget/me", headers={"X-Callhook-Agent": "forged"}, timeout=10
    )
    assert refused.status_code == 403 and "link is invalid" in refused.json()["reason"]
    assert refused.headers["Cache-Control"] == "no-store"


def test_hubspot_hears_each_inbound_call_and_opens_the_callers_record(  # type: ignore[no-untyped-def]
    browser, widget_server, hubspot_host, hubspot
) -> None:
    from playwright.sync_api import expect

    hubspot.reset()
    contact = hubspot.add_contact(firstname="Grace", lastname="Hopper", company="Navy Labs",
                                  phone="06 12 34 56 60")  # fmt: skip
    page = browser.new_page()
    to_callhook: list[Any] = []  # every request the widget made to callhook (frames included)
    page.on("request", lambda r: to_callhook.append(r) if r.url.startswith(widget_server.url)
            else None)  # fmt: skip
    page.goto(hubspot_host.url)
    assert wait_for(page, "INITIALIZED")["data"] == {"isLoggedIn": False}
    widget = page.frame_locator("#hubspot-calling-extension-iframe")

    # Signing in inside the widget: a forged link is refused with the reason, a real one kept.
    widget.locator("#link").fill("https://callhook.example/agent?k=forged-forged-forged-forged")
    widget.locator("#sign-in button[type=submit]").click()
    expect(widget.locator("#sign-in-error")).to_contain_text("link is invalid")
    token = create_link("alice@example.com")
    widget.locator("#link").fill(f"{widget_server.url}/agent?k={token}")
    widget.locator("#sign-in button[type=submit]").click()
    expect(widget.locator("#agent")).to_have_text("Alice Martin")
    expect(widget.locator("#status")).to_have_text("connected")
    wait_for(page, "LOGGED_IN")

    # A known caller rings Alice's extension: HubSpot hears the call and opens the record.
    post(widget_server, live("widget-1", "ringing", "1001", "33612345660"))
    incoming = wait_for(page, "INCOMING_CALL", "kavkom:widget-1")
    assert isinstance(incoming["data"].pop("callStartTime"), int)
    assert incoming["data"] == {
        "externalCallId": "kavkom:widget-1",
        "fromNumber": "+33612345660",
        "toNumber": "",  # the card has no company_number yet
        "createEngagement": False,
    }
    navigate = wait_for(page, "NAVIGATE_TO_RECORD")
    assert navigate["data"] == {
        "objectCoordinates": {
            "portalId": PORTAL_ID,
            "objectTypeId": "0-1",
            "objectId": int(contact),
        }
    }
    card = widget.locator('[data-call="kavkom:widget-1"]')
    expect(card.locator(".who")).to_have_text("Grace Hopper")
    expect(card).to_contain_text("Navy Labs")

    post(widget_server, live("widget-1", "active", "1001", "33612345660"))
    answered = wait_for(page, "CALL_ANSWERED", "kavkom:widget-1")
    assert answered["data"] == {"externalCallId": "kavkom:widget-1"}
    expect(card).to_have_attribute("data-state", "answered")
    post(widget_server, live("widget-1", "finished", "1001", "33612345660"))
    ended = wait_for(page, "CALL_ENDED", "kavkom:widget-1")
    assert ended["data"] == {"externalCallId": "kavkom:widget-1", "callEndStatus": "COMPLETED"}
    assert len(sent(page, "INCOMING_CALL")) == 1

    # A ring group: Bob answers, so for Alice the call ends as CANCELED, never answered.
    post(widget_server, live("widget-2", "ringing", "1001", "33612345662"))
    post(widget_server, live("widget-2", "ringing", "1002", "33612345662"))
    wait_for(page, "INCOMING_CALL", "kavkom:widget-2")
    post(widget_server, live("widget-2", "active", "1002", "33612345662"))
    withdrawn = wait_for(page, "CALL_ENDED", "kavkom:widget-2")
    assert withdrawn["data"]["callEndStatus"] == "CANCELED"
    assert [m["data"]["externalCallId"] for m in sent(page, "CALL_ANSWERED")] == ["kavkom:widget-1"]
    assert len(sent(page, "NAVIGATE_TO_RECORD")) == 1  # widget-2's caller is unknown

    # HubSpot's click-to-call: the widget asks callhook's real /agent/call to place it.
    with page.expect_request(
        lambda r: urlsplit(r.url).path == "/agent/call" and r.method == "POST"
    ) as dialled:
        page.evaluate("""() => window.host.sendMessage({type: "DIAL_NUMBER", data: {
            phoneNumber: "+33612345661", objectId: 1, objectType: "CONTACT",
            ownerId: 77, portalId: 26123456}})""")
    request = dialled.value
    assert request.post_data_json == {"to": "+33612345661"}
    assert request.headers["x-callhook-agent"] == token and urlsplit(request.url).query == ""
    response = request.response()
    assert response is not None
    if response.status == 202:
        outgoing = wait_for(page, "OUTGOING_CALL_STARTED")
        assert outgoing["data"]["toNumber"] == "+33612345661"
        assert outgoing["data"]["createEngagement"] is False
    else:  # no platform places calls in this test: the agent reads callhook's reason
        expect(widget.locator("#dial")).to_have_text(response.json()["reason"])

    # /agent/call's success answer (its contract, served by the browser here, since no
    # platform can place calls in this test): HubSpot hears of the call, with no engagement,
    # until the agent says it is over.
    page.route(
        re.compile(r"/agent/call$"),
        lambda route: route.fulfill(
            status=202,
            json={"status": "ringing", "message": "Your phone rings first."},
        ),
    )
    before = len(sent(page, "OUTGOING_CALL_STARTED"))
    page.evaluate("""() => window.host.sendMessage({type: "DIAL_NUMBER", data: {
        phoneNumber: "+33612345663", objectId: 1, objectType: "CONTACT",
        ownerId: 77, portalId: 26123456}})""")
    page.wait_for_function(
        "n => window.__fromWidget.filter(m => m.type === 'OUTGOING_CALL_STARTED').length > n",
        arg=before,
        timeout=WAIT_MS,
    )
    outgoing = sent(page, "OUTGOING_CALL_STARTED")[-1]
    call_id = outgoing["data"]["externalCallId"]
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", call_id
    )
    assert outgoing["data"]["toNumber"] == "+33612345663"
    assert outgoing["data"]["createEngagement"] is False
    expect(widget.locator("#dial")).to_contain_text("Your phone rings first.")
    widget.locator('[data-role="call-finished"]').click()
    finished = wait_for(page, "CALL_ENDED", call_id)
    assert finished["data"] == {"externalCallId": call_id, "callEndStatus": "COMPLETED"}
    page.unroute(re.compile(r"/agent/call$"))

    # The sign-in survives a reload of HubSpot's page; signing out forgets it.
    page.reload()
    assert wait_for(page, "INITIALIZED")["data"] == {"isLoggedIn": True}
    expect(widget.locator("#status")).to_have_text("connected")
    widget.locator("#sign-out").click()
    wait_for(page, "LOGGED_OUT")
    expect(widget.locator("#sign-in")).to_be_visible()
    frame = page.frame(url=re.compile(r"/hubspot/widget$"))
    assert frame is not None
    assert frame.evaluate("localStorage.getItem('callhook.widget.token')") is None
    # The token went in headers only: the stream, the checks, the calls.
    assert [r.url for r in to_callhook if "k=" in urlsplit(r.url).query] == []
    streams = [r for r in to_callhook if urlsplit(r.url).path == "/agent/stream"]
    assert streams and all(r.headers["x-callhook-agent"] == token for r in streams)
    page.close()
