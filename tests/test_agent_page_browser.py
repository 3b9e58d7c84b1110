"""The agent page in a real browser (Debian's headless Chromium, driven by Playwright).

What an agent sees: the caller's name on a card while the phone rings, the card turning
"on the call" then "ended"; a colleague's page stays empty. The token never rides in a URL
after the link is opened: the address bar loses ``?k=``, the page's own requests (the card
stream, click-to-call) carry it in the X-Callhook-Agent header, a reload still works, a
link past half its lifetime is renewed by the page, and a revoked one says why.

The agent's everyday: a known contact's card (company, owner, open deal, last call) in the
browser's language and time zone, usable by keyboard and announced to screen readers;
after the call, an outcome and a note saved to the one HubSpot call; today's calls and the
missed calls to call back, each with its call button.

Set CALLHOOK_SCREENSHOTS to a folder to keep screenshots of the page as the tests see it.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium, screenshot  # noqa: F401
from tests.conftest import KAVKOM_SECRET, ROOT, Environment, LiveServer, wait_until
from tests.test_screen_pop import _pages_per_agent, live  # noqa: F401  (a fixture)
from worker.core.agent_links import create_link

pytestmark = needs_chromium


def post(server: LiveServer, payload: dict[str, Any]) -> None:
    response = requests.post(f"{server.url}/webhooks/kavkom", json=payload, timeout=10,
                             headers={"Authorization": f"Bearer {KAVKOM_SECRET}"})  # fmt: skip
    assert response.status_code == 200, response.text


class Requests:
    """What a page asked of callhook, as the browser sent it (URL and headers)."""

    def __init__(self, page: Any, server: LiveServer) -> None:
        self.seen: list[Any] = []
        page.on("request", lambda r: self.seen.append(r) if r.url.startswith(server.url) else None)

    def to(self, path: str) -> list[Any]:
        return [r for r in self.seen if urlsplit(r.url).path == path]

    def assert_no_token_in_urls_after_the_link(self) -> None:
        first, *rest = self.seen
        assert urlsplit(first.url).path == "/agent"
        assert [r.url for r in rest if "k=" in urlsplit(r.url).query] == []


def test_agent_sees_the_caller_card_follow_the_call(browser, live_server, hubspot) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    hubspot.add_contact(firstname="Grace", lastname="Hopper", company="Navy Labs",
                        phone="06 12 34 56 50")  # fmt: skip
    alice = browser.new_page()
    bob = browser.new_page()
    sent = Requests(alice, live_server)
    token = create_link("alice@example.com")
    alice.goto(f"{live_server.url}/agent?k={token}")
    bob.goto(f"{live_server.url}/agent?k={create_link('bob@example.com')}")
    expect(alice.locator("#status")).to_have_text("connected")
    expect(bob.locator("#status")).to_have_text("connected")
    # The token left the address bar (history, bookmarks, screen shares); the stream got
    # it in a header.
    assert alice.url == f"{live_server.url}/agent"
    (stream,) = sent.to("/agent/stream")
    assert stream.headers["x-callhook-agent"] == token
    assert urlsplit(stream.url).query == ""

    post(live_server, live("browser-1", "ringing", "1001", "33612345650"))
    card = alice.locator('[data-call="kavkom:browser-1"]')
    expect(card.locator(".who")).to_have_text("Grace Hopper")
    expect(card).to_have_attribute("data-state", "ringing")
    expect(card).to_contain_text("Navy Labs")
    expect(card.locator('[data-role="open-record"]')).to_have_attribute(
        "href", re.compile(r"^https://app-eu1\.hubspot\.com/contacts/26123456/record/0-1/\d+$")
    )

    post(live_server, live("browser-1", "active", "1001", "33612345650"))
    expect(card).to_have_attribute("data-state", "answered")
    expect(card.locator(".state")).to_have_text("On the call")
    post(live_server, live("browser-1", "finished", "1001", "33612345650"))
    expect(card).to_have_attribute("data-state", "ended")

    expect(bob.locator('[data-call="kavkom:browser-1"]')).to_have_count(0)
    expect(bob.locator("#empty")).to_be_visible()
    sent.assert_no_token_in_urls_after_the_link()

    # A reload (or a bookmark of the page) has no token in its address: the page uses the
    # one this browser kept, and pops the next call.
    alice.reload()
    expect(alice.locator("#status")).to_have_text("connected")
    expect(alice.locator("#agent")).to_have_text("Alice Martin")
    post(live_server, live("browser-2", "ringing", "1001", "33612345650"))
    expect(alice.locator('[data-call="kavkom:browser-2"] .who')).to_have_text("Grace Hopper")
    assert alice.url == f"{live_server.url}/agent"
    sent.assert_no_token_in_urls_after_the_link()
    alice.close()
    bob.close()


def test_the_page_renews_an_aging_link_and_says_when_one_is_revoked(browser, live_server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from tests.test_agent_links import set_expiry
    from worker.core.agent_links import holder, revoke
    from worker.core.models import utcnow

    token = create_link("bob@example.com")
    set_expiry(token, utcnow() + timedelta(days=10))  # past half of its 30 days
    page = browser.new_page()
    page.goto(f"{live_server.url}/agent?k={token}")
    expect(page.locator("#status")).to_have_text("connected")
    page.wait_for_function("old => localStorage.getItem('callhook.token') !== old", arg=token)
    fresh = page.evaluate("localStorage.getItem('callhook.token')")
    renewed = holder(fresh)
    assert renewed is not None and renewed.email == "bob@example.com"
    assert renewed.expires_at > utcnow() + timedelta(days=29)

    revoke("bob@example.com")
    page.reload()
    expect(page.locator("#problem")).to_contain_text("was revoked; ask your admin for a new link")
    expect(page.locator("#status")).to_have_text("signed out")
    assert page.evaluate("localStorage.getItem('callhook.token')") is None
    page.close()

    # An expired link opened from a mail: the page says so rather than a bare error.
    expired = create_link("bob@example.com")
    set_expiry(expired, utcnow() - timedelta(minutes=1))
    page = browser.new_page()
    page.goto(f"{live_server.url}/agent?k={expired}")
    expect(page.locator("#problem")).to_contain_text("expired on")
    expect(page.locator("#problem")).to_contain_text("ask your admin for a new link")
    assert page.url == f"{live_server.url}/agent"
    page.close()


def test_agent_dials_from_the_page_and_reads_the_platforms_answer(browser, live_server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from tests.conftest import Environment
    from tests.platforms.kavkom.fake_api import FakeKavkom

    domain = "0b6f3c1e-5d2a-4f7b-9c8e-1a2b3c4d5e6f"
    with FakeKavkom(token="kav-token", domain_uuid=domain, extensions=["1001"]) as kavkom:
        env = Environment()
        env.set({"KAVKOM_API_TOKEN": "kav-token", "KAVKOM_DOMAIN_UUID": domain,
                 "KAVKOM_API_BASE_URL": kavkom.url})  # fmt: skip
        try:
            page = browser.new_page()
            sent = Requests(page, live_server)
            token = create_link("alice@example.com")
            page.goto(f"{live_server.url}/agent?k={token}")
            page.fill("#dial-number", "06 12 34 56 51")
            page.click("#dial-box button")
            expect(page.locator("#dial-result")).to_contain_text("Your phone rings first")
            (dialled,) = sent.to("/agent/call")
            assert dialled.headers["x-callhook-agent"] == token
            assert urlsplit(dialled.url).query == ""
            (placed,) = kavkom.placed()
            assert (placed["json"]["src"], placed["json"]["destination"]) == ("1001", "33612345651")
            kavkom.switch_rejects("1001", "USER_NOT_REGISTERED")
            page.click("#dial-box button")
            expect(page.locator("#dial-result")).to_have_class("error")
            assert "Your phone rings first" not in page.locator("#dial-result").inner_text()
            # A premium-rate number: callhook's own refusal, and the platform never hears it.
            before = len(kavkom.requests())
            page.fill("#dial-number", "08 99 12 34 56")
            page.click("#dial-box button")
            expect(page.locator("#dial-result")).to_contain_text("premium-rate")
            assert len(kavkom.requests()) == before
            sent.assert_no_token_in_urls_after_the_link()
            page.close()
        finally:
            env.restore()


def now_live(
    call_id: str, state: str, extension: str, number: str, **changes: Any
) -> dict[str, Any]:
    """A live Kavkom event of a call that starts now (the fixture's epoch is from 2024)."""
    return {**live(call_id, state, extension, number), "createdEpoch": int(time.time()), **changes}


def agent_page(browser: Any, server: LiveServer, email: str, **context: Any) -> Any:
    """A connected agent page in a fresh browser context (its own language and time zone)."""
    from playwright.sync_api import expect

    page = browser.new_context(**context).new_page()
    page.goto(f"{server.url}/agent?k={create_link(email)}")
    expect(page.locator("#status")).to_have_text(re.compile("^connect"))
    return page


def hubspot_call(hubspot: Any, number: str) -> list[dict[str, Any]]:
    ends = ("hs_call_from_number", "hs_call_to_number")
    return [c for c in hubspot.calls() if number in (c["properties"].get(e) for e in ends)]


def test_a_known_contacts_card_in_french_by_keyboard_and_for_screen_readers(  # type: ignore[no-untyped-def]
    browser, live_server, hubspot, tmp_path
) -> None:
    from playwright.sync_api import expect

    from worker.core.db import session_scope
    from worker.core.models import Call, utcnow
    from worker.tasks import pops

    owner = hubspot.add_owner("carol@example.com", "Carol", "Owner")
    contact = hubspot.add_contact(firstname="Grace", lastname="Hopper", company="Navy Labs",
                                  phone="06 12 34 56 52", hubspot_owner_id=owner)  # fmt: skip
    hubspot.add_deal("Renewal 2027", contact, amount="12000")
    with session_scope() as session:
        # Her last call, wrapped up by Alice: 14:05 UTC is 15:05 in Paris.
        session.add(Call(
            platform="kavkom", platform_call_id="fr-last", direction="inbound", stage="cdr",
            external_number="+33612345652", agent="1001", ended=True, outcome="answered",
            started_at=datetime(2026, 3, 18, 14, 0, tzinfo=UTC),
            ended_at=datetime(2026, 3, 18, 14, 5, tzinfo=UTC), crm_status="synced",
            agent_outcome="f240bbac-87c9-4f6e-bf70-924b57d47db7", agent_note="Wants a quote",
        ))  # fmt: skip
        ringing = Call(platform="kavkom", platform_call_id="fr-now", direction="inbound",
                       external_number="+33612345652", agent="1001",
                       started_at=utcnow())  # fmt: skip
        session.add(ringing)
        session.flush()
        call_id = ringing.id

    page = agent_page(browser, live_server, "alice@example.com", locale="fr-FR",
                      timezone_id="Europe/Paris")  # fmt: skip
    expect(page.locator("#status")).to_have_text("connecté")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator("#dial-box button")).to_have_text("Appeler")
    # The open deal is asked for only when the CRM file says so (one more search): the
    # screen_pop task's work, run here on a copy of the mappings that asks for it.
    folder = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", folder)
    crm_file = folder / "hubspot.yaml"
    crm_file.write_text(crm_file.read_text().replace("open_deal: false", "open_deal: true"))
    env = Environment()
    env.set({"MAPPINGS_DIR": str(folder)})
    try:
        pops.ring(call_id, "alice@example.com")
    finally:
        env.restore()

    card = page.locator('[data-call="kavkom:fr-now"]')
    expect(card.locator(".who")).to_have_text("Grace Hopper")
    expect(card.locator(".state")).to_have_text("Appel entrant")
    facts = card.locator(".facts")
    expect(facts).to_contain_text("EntrepriseNavy Labs")
    expect(facts).to_contain_text("PropriétaireCarol Owner")
    expect(facts).to_contain_text("Transaction ouverteRenewal 2027 · 12\u202f000")
    expect(facts).to_contain_text("18 mars 2026")
    expect(facts).to_contain_text("15:05 · Entrant · Connecté")
    expect(facts.locator("q")).to_have_text("Wants a quote")
    # Screen readers hear who calls, once, from the live region.
    expect(page.locator("#announcer")).to_have_attribute("aria-live", "assertive")
    expect(page.locator("#announcer")).to_have_text(
        "Appel entrant : Grace Hopper, Navy Labs, +33 6 12 34 56 52"
    )
    # By keyboard alone: Tab reaches the record's link, and where the focus is shows.
    page.locator("#dial-number").focus()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.role") == "open-record":
            break
    focused = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
        return [document.activeElement.textContent, s.outlineStyle, s.outlineWidth]; }""")
    assert focused == ["Ouvrir dans HubSpot", "solid", "3px"]
    assert page.locator("[onclick]").count() == 0
    screenshot(page, "known-contact-fr")
    page.context.close()


def test_after_the_call_the_agent_saves_an_outcome_and_a_note_to_the_one_hubspot_call(  # type: ignore[no-untyped-def]
    browser, live_server, hubspot
) -> None:
    from playwright.sync_api import expect

    hubspot.reset()  # the same number's call of the other database's run is not this one
    hubspot.add_contact(firstname="Ada", lastname="Lovelace", company="Analytical Ltd",
                        phone="06 12 34 56 53")  # fmt: skip
    page = agent_page(browser, live_server, "alice@example.com")
    card = page.locator('[data-call="kavkom:wrap-browser"]')
    # The phone rings before it is answered: a pop whose call already ended when its
    # task ran is (rightly) never shown, so the test waits for the ring like a caller would.
    post(live_server, now_live("wrap-browser", "ringing", "1001", "33612345653"))
    expect(card).to_be_visible()
    for state in ("active", "finished"):
        post(live_server, now_live("wrap-browser", state, "1001", "33612345653"))
    expect(card).to_have_attribute("data-state", "ended")
    outcome = card.get_by_label("Outcome")
    note = card.get_by_label("Note")
    expect(outcome).to_be_visible()
    expect(note).to_be_visible()
    assert outcome.locator("option").all_inner_texts() == [
        "Choose an outcome", "Connected", "Busy", "No answer", "Left voicemail",
        "Left live message", "Wrong number",
    ]  # fmt: skip
    # The card waits for the wrap-up: it does not fade like other ended cards.
    screenshot(page, "wrap-up-form")
    outcome.select_option(label="Left voicemail")
    note.fill("Call back Friday <b>before noon</b>\n& send the quote")
    card.get_by_role("button", name="Save").focus()
    page.keyboard.press("Enter")
    expect(card.locator('[data-role="wrap-saved"]')).to_contain_text(
        "Saved: the HubSpot call is updated in a moment."
    )
    expect(card.locator('[data-role="wrap-saved"]')).to_contain_text("Outcome: Left voicemail")

    def carried() -> dict[str, Any] | None:
        calls = hubspot_call(hubspot, "+33612345653")
        if len(calls) == 1 and calls[0]["properties"].get("hs_call_disposition") == (
            "b2cf5968-551e-4856-9783-52b3da59a7d0"
        ):
            return calls[0]["properties"]
        return None

    props = wait_until(carried, timeout=30)
    assert (
        "Call back Friday &lt;b&gt;before noon&lt;/b&gt;<br>\n&amp; send the quote"
        in props["hs_call_body"]
    )
    assert len(hubspot_call(hubspot, "+33612345653")) == 1
    row = page.locator("#today li", has_text="Ada Lovelace")
    expect(row).to_contain_text("Left voicemail")
    screenshot(page, "wrap-up-saved")
    page.context.close()


def test_todays_calls_and_the_missed_ones_to_call_back(browser, live_server, hubspot) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    hubspot.add_contact(firstname="Katherine", lastname="Johnson", company="NACA",
                        phone="06 12 34 56 54")  # fmt: skip
    page = agent_page(browser, live_server, "alice@example.com", timezone_id="America/New_York")
    # An answered call, a missed one, and a missed one a colleague called back since.
    for state in ("ringing", "active", "finished"):
        post(live_server, now_live("list-answered", state, "1001", "33612345654"))
    for state in ("ringing", "finished"):
        post(live_server, now_live("list-missed", state, "1001", "33612345655"))
        post(live_server, now_live("list-called-back", state, "1001", "33612345656"))
    later = int(time.time()) + 60
    for state in ("ringing", "active", "finished"):
        post(live_server, now_live("list-back", state, "1002", "33612345656",
                                   direction="outbound", event="outbound",
                                   createdEpoch=later))  # fmt: skip

    today = page.locator("#today")
    expect(today.locator("li", has_text="Katherine Johnson")).to_contain_text("Inbound")
    expect(today.locator("li", has_text="Katherine Johnson")).to_contain_text("Answered")
    expect(today.locator("li", has_text="+33 6 12 34 56 55")).to_contain_text("No answer")
    time_text = today.locator("li", has_text="Katherine Johnson").locator("time").inner_text()
    assert re.fullmatch(r"\d{1,2}:\d\d [AP]M", time_text), time_text  # en-US, the default
    missed = page.locator("#missed")
    expect(missed.locator("li", has_text="+33 6 12 34 56 55")).to_have_count(1)
    page.reload()  # the lists come from callhook's table, not from the cards of this page
    expect(missed.locator("li", has_text="+33 6 12 34 56 55")).to_have_count(1)
    expect(missed.locator("li", has_text="+33 6 12 34 56 56")).to_have_count(0)
    expect(today.locator("li", has_text="Katherine Johnson")).to_have_count(1)
    screenshot(page, "today-and-missed")

    # Each entry has its call button; this agent has no click-to-call set up, and reads whom
    # to ask (the technical detail goes to the server's log).
    back = missed.get_by_role("button", name="Call back +33 6 12 34 56 55")
    back.click()
    expect(page.locator("#dial-result")).to_have_text(
        "Click-to-call is not set up for you yet: ask your admin"
    )
    expect(today.get_by_role("button", name="Call Katherine Johnson")).to_be_visible()
    page.context.close()
