"""The agent page in a real browser (Debian's headless Chromium, driven by Playwright).

What an agent sees: the caller's name on a card while the phone rings, the card turning
"on the call" then "ended"; a colleague's page stays empty. The token never rides in a URL
after the link is opened: the address bar loses ``?k=``, the page's own requests (the card
stream, click-to-call) carry it in the X-Callhook-Agent header, a reload still works, a
link past half its lifetime is renewed by the page, and a revoked one says why.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import KAVKOM_SECRET, LiveServer
from tests.test_screen_pop import _pages_per_agent, live  # noqa: F401  (a fixture)
from worker.agent_links import create_link

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
if CHROMIUM is None and os.environ.get("CALLHOOK_REQUIRE_BROWSER"):
    raise RuntimeError("CALLHOOK_REQUIRE_BROWSER is set but no chromium binary was found")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium: install Debian's chromium package (.ci/run does)"
)
# As the machine's notes advise: no background networking (the sandbox has no internet).
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


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
    from worker.agent_links import holder, revoke
    from worker.models import utcnow

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
