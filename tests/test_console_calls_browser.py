"""The calls list and a call's story in a real browser (Debian's headless Chromium).

What an operator does: sign in, open Calls, type a caller's number the way they read it
and search, open that call's story, read the verdict and the timeline, and get through
the links with the keyboard alone. Set CALLHOOK_SCREENSHOTS to keep what the pages look
like on a 1366x800 laptop screen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.browser import needs_chromium, screenshot
from tests.conftest import KAVKOM_SECRET, Environment, LiveServer, load_fixture
from tests.console_sign_in import signed_in_page
from tests.test_console_calls import settled
from worker.core.models import CrmStatus

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(stack: dict[str, Any]) -> Iterator[LiveServer]:
    """The receiver on a real HTTP server, with a HubSpot portal id for the record links."""
    environment = Environment()
    environment.set({"HUBSPOT_PORTAL_ID": "4242"})
    live = LiveServer()
    yield live
    live.close()
    environment.restore()


def post(server: LiveServer, payload: dict[str, Any]) -> None:
    answer = requests.post(f"{server.url}/webhooks/kavkom", json=payload, timeout=10,
                           headers={"Authorization": f"Bearer {KAVKOM_SECRET}"})  # fmt: skip
    assert answer.status_code == 200, answer.text


def cdr(call_id: str, number: str, agent: str) -> dict[str, Any]:
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload.update(callUuid=call_id, number=number, createdEpoch=int(time.time()) - 130,
                   presenceId=f"{agent}@contact.example.kavkom.com")  # fmt: skip
    return payload


def test_operator_finds_a_call_by_number_and_reads_its_story(  # type: ignore[no-untyped-def]
    browser, server, hubspot
) -> None:
    from playwright.sync_api import expect

    hubspot.reset()
    hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 12 34 56 71")
    post(server, cdr("browser-calls-1", "33612345671", "1001"))
    post(server, cdr("browser-calls-2", "33612345672", "1002"))
    call = settled("browser-calls-1", CrmStatus.SYNCED)
    settled("browser-calls-2", CrmStatus.SYNCED)

    page = signed_in_page(browser, server.url)
    page.goto(f"{server.url}/admin/calls")
    expect(page.get_by_role("heading", level=1)).to_have_text("Calls")
    expect(page.get_by_role("link", name="Calls")).to_have_attribute("aria-current", "page")
    expect(page.locator("table.calls tbody tr")).to_have_count(2)
    screenshot(page, "calls-list")

    # The number as it is read aloud, spaces and a leading 0: the E.164 call is found.
    page.get_by_label("Number").fill("06 12 34 56 71")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(
        f"{server.url}/admin/calls?platform=&direction=&number=06+12+34+56+71&agent=&status=&from=&to="
    )
    rows = page.locator("table.calls tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Ada Lovelace")
    expect(rows.first.locator(".badge.logged")).to_have_text("logged")
    expect(page.get_by_label("Number")).to_have_value("06 12 34 56 71")
    screenshot(page, "calls-list-filtered")

    # The story link is reached with the keyboard, and opened with Enter.
    story = page.get_by_role("link", name=f"Story of call #{call.id}")
    page.get_by_role("button", name="Search").focus()
    for _ in range(20):
        page.keyboard.press("Tab")
        if story.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError("the story link is not reachable with Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.url}/admin/calls/{call.id}")

    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Call #{call.id}")
    expect(page.locator(".verdict")).to_contain_text(
        f"Logged in HubSpot as call {call.crm_id} on contact Ada Lovelace"
    )
    timeline = page.get_by_role("region", name="Timeline")
    expect(timeline.locator("ol.timeline > li")).to_have_count(2)  # the delivery, the create
    expect(timeline.get_by_role("heading", level=3).first).to_contain_text("Delivery #")
    record = page.get_by_role("link", name=f"call {call.crm_id}")
    expect(record).to_have_attribute(
        "href", f"https://app.hubspot.com/contacts/4242/record/0-48/{call.crm_id}"
    )
    screenshot(page, "call-story")

    # Every disclosure opens from the keyboard: the body, then the canonical event.
    body = timeline.get_by_text("Body as received (secrets redacted)")
    body.focus()
    page.keyboard.press("Enter")
    expect(timeline.locator("details").first).to_have_attribute("open", "")
    expect(timeline.locator("details pre").first).to_contain_text('"callUuid": "browser-calls-1"')
    timeline.get_by_text("Canonical event 1: cdr").focus()
    page.keyboard.press("Enter")
    timeline.get_by_text("HubSpot request", exact=False).first.focus()
    page.keyboard.press("Enter")
    expect(timeline.locator("table.requests")).to_be_visible()
    screenshot(page, "call-story-open")
    page.context.close()


def test_operator_reads_why_a_call_is_not_in_hubspot(browser, server, hubspot) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    hubspot.reset()
    hubspot.fail_next(1, 400, path_prefix="/crm/v3/objects/calls")
    post(server, cdr("browser-calls-refused", "33612345673", "1001"))
    call = settled("browser-calls-refused", CrmStatus.FAILED)

    page = signed_in_page(browser, server.url)
    page.goto(f"{server.url}/admin/calls?status=failed")
    row = page.locator("table.calls tbody tr", has_text="+33 6 12 34 56 73")
    expect(row.locator(".badge.failed")).to_have_text("failed")
    row.get_by_role("link", name=f"Story of call #{call.id}").click()
    verdict = page.locator(".verdict")
    expect(verdict).to_contain_text("Failed: ")
    expect(verdict).to_contain_text("scripted failure 400")
    expect(verdict.get_by_role("link", name="Problems")).to_be_visible()
    expect(page.locator("ol.timeline > li.bad")).to_contain_text("HubSpot create")
    screenshot(page, "call-story-failed")
    page.context.close()
