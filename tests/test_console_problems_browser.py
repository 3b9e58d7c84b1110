"""The problems page and the mapping sandbox in a real browser (Debian's headless Chromium).

An operator signs in, opens Problems, presses Retry on a failed call and Replay on a
delivery, and reads the answer each time; then tries a payload in the sandbox. Set
CALLHOOK_SCREENSHOTS to a folder to keep what the pages look like on a 1366x800 laptop.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.browser import needs_chromium, screenshot
from tests.conftest import KAVKOM_SECRET, LiveServer, load_fixture
from tests.console_sign_in import signed_in_page
from worker.core.db import session_scope
from worker.core.models import Call, CrmStatus, utcnow

pytestmark = needs_chromium


def post(server: LiveServer, payload: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        f"{server.url}/webhooks/kavkom",
        json=payload,
        timeout=10,
        headers={"Authorization": f"Bearer {KAVKOM_SECRET}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def failed_call(call_id: str) -> int:
    """A call HubSpot refused for good, as `call_logging` leaves it."""
    with session_scope() as session:
        call = Call(
            platform="kavkom", platform_call_id=call_id, stage="ended", ended=True,
            direction="outbound", external_number="+33612340077", started_at=utcnow(),
            ended_at=utcnow(), outcome="answered", crm_status=CrmStatus.FAILED,
            crm_error="HubSpot 400 VALIDATION_ERROR: Property values were not valid: "
            '[{"isValid":false,"message":"hs_call_source was not one of the allowed options"}]',
        )  # fmt: skip
        session.add(call)
        session.flush()
        assert call.id is not None
        return call.id


def test_operator_retries_a_call_and_replays_a_delivery(browser, live_server, hubspot) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    hubspot.reset()
    call_id = failed_call("browser-problem-1")
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload.update(callUuid="browser-unmapped-1", direction="transfer")
    event_id = post(live_server, payload)["id"]

    page = signed_in_page(browser, live_server.url)
    page.goto(live_server.url + "/admin/problems")
    expect(page.get_by_role("heading", name="Failed CRM syncs")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=f"#{call_id}")
    expect(row).to_contain_text("hs_call_source was not one of the allowed options")
    group = page.locator("section.group").filter(has_text="direction 'transfer'")
    expect(group).to_contain_text("kavkom")
    screenshot(page, "problems")

    row.get_by_role("button", name=f"Retry call {call_id}").click()
    expect(page.locator(".flash")).to_have_text(f"call {call_id} queued for a CRM sync")
    screenshot(page, "problems-after-retry")

    group = page.locator("section.group").filter(has_text="direction 'transfer'")
    group.locator("summary").click()
    expect(group.locator("pre").first).to_contain_text("browser-unmapped-1")
    screenshot(page, "problems-group-open")
    group.get_by_role("button", name=f"Replay delivery {event_id}").click()
    expect(page.locator(".flash.error")).to_contain_text(f"event {event_id} still cannot be mapped")

    # From the group to the sandbox, prefilled with the delivery: the same reason.
    group = page.locator("section.group").filter(has_text="direction 'transfer'")
    group.get_by_role("link", name="Try this payload in the sandbox").click()
    expect(page.get_by_role("heading", name="Mapping sandbox")).to_be_visible()
    expect(page.get_by_label("Platform")).to_have_value("kavkom")
    expect(page.locator(".result")).to_contain_text("direction 'transfer' is not one of")
    screenshot(page, "sandbox-prefilled")
    page.context.close()


def test_sandbox_form_round_trip(browser, live_server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page = signed_in_page(browser, live_server.url)
    page.goto(live_server.url + "/admin/sandbox")
    page.get_by_label("Platform").select_option("kavkom")
    page.get_by_label("Sent as").select_option("json")
    page.get_by_label("Payload").fill(load_fixture("kavkom", "cdr__outbound.json").decode())
    page.get_by_role("button", name="Try it").click()
    expect(page.locator(".result")).to_contain_text("Mapped to 1 canonical event.")
    expect(page.locator(".result")).to_contain_text("/crm/v3/objects/calls")
    # The form keeps what was tried, for the next edit.
    expect(page.get_by_label("Platform")).to_have_value("kavkom")
    expect(page.get_by_label("Payload")).to_have_value(
        load_fixture("kavkom", "cdr__outbound.json").decode()
    )
    screenshot(page, "sandbox-result")

    page.get_by_label("Payload").fill("{not json")
    page.get_by_role("button", name="Try it").click()
    expect(page.locator(".result .answer.bad")).to_contain_text(
        "The mapping cannot read this payload: body is not valid JSON"
    )
    screenshot(page, "sandbox-error")
    page.goto(live_server.url + "/admin/health")
    expect(page.get_by_role("heading", name="Health", exact=True)).to_be_visible()
    screenshot(page, "health")
    page.context.close()
