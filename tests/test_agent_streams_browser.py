"""The agent page in Chromium, served by the Procfile's gunicorn and its stream hub.

More pages than the web process has threads are open in the browser; a ringing webhook
goes through the worker to each of the agent's pages (the card, with the caller's name)
and to none of the other agent's, and the card follows the call (answered).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium, screenshot  # noqa: F401
from tests.test_agent_streams_gunicorn import Web
from tests.test_screen_pop import live, post

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def web(stack: dict[str, Any]) -> Iterator[Web]:
    env = {**os.environ, **stack["env"]}
    env.update(WEB_CONCURRENCY="1", WEB_THREADS="4", WEBHOOK_THREADS="2")
    server = Web(env, stack["tmp"] / "web.log")
    yield server
    server.stop()


def test_cards_reach_pages_the_hub_serves(browser, web, hubspot) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from worker.core.agent_links import create_link

    hubspot.add_contact(firstname="Ada", lastname="Lovelace", company="Engines",
                        phone="06 12 34 56 70")  # fmt: skip
    alice = [browser.new_page() for _ in range(3)]
    bob = [browser.new_page() for _ in range(3)]  # 6 pages, 4 threads (2 for webhooks)
    try:
        for pages, email in ((alice, "alice@example.com"), (bob, "bob@example.com")):
            token = create_link(email)
            for page in pages:
                page.goto(f"{web.url}/agent?k={token}")
        for page in alice + bob:
            expect(page.locator("#status")).to_have_text("connected")

        post(web, live("hub-browser-1", "ringing", "1001", "33612345670"))
        for page in alice:
            card = page.locator('[data-call="kavkom:hub-browser-1"]')
            expect(card.locator(".who")).to_have_text("Ada Lovelace", timeout=15_000)
        for page in bob:
            assert page.locator('[data-call="kavkom:hub-browser-1"]').count() == 0
        post(web, live("hub-browser-1", "active", "1001", "33612345670"))
        expect(alice[0].locator('[data-call="kavkom:hub-browser-1"]')).to_have_attribute(
            "data-state", "answered", timeout=15_000
        )
        screenshot(alice[0], "agent-page-stream-hub")
    finally:
        for page in alice + bob:
            page.close()
