"""The operator console on a deployment started from the Procfile with only environment
variables (issue #11's "done when"), driven in Chromium as an operator would.

`release`, then `web` (gunicorn) and `worker` (celery) from the Procfile; the operator
signs in with the link `callhook admin link` printed. Three deliveries: a call logged
normally, a call HubSpot refuses (the fake answers 400 once), and a Kavkom delivery no rule
of the mapping reads. Each appears where the console says it will; the failed call is
retried from the console once HubSpot takes it again and lands exactly once; the unmapped
delivery is replayed after its mapping file is fixed and lands exactly once; the story page
shows a call's deliveries and its HubSpot requests; `/metrics` scrapes and its counters move;
`callhook agents discover` proposes agents.yaml entries from the platforms' fake APIs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from tests.browser import needs_chromium, screenshot
from tests.conftest import KAVKOM_SECRET, ROOT, load_fixture, wait_until
from tests.test_agent_discovery import ACCOUNT, DOMAIN, Fakes
from tests.test_procfile_deploy import http, start_deployment

pytestmark = needs_chromium
WAIT_MS = 30_000
AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}", "Content-Type": "application/json"}


def cdr(call_id: str, number: str, *, drop: tuple[str, ...] = (), **changes: Any) -> bytes:
    """Kavkom's documented CDR (its API docs' example) for another call and number."""
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload.update(callUuid=call_id, number=number, **changes)
    return json.dumps({k: v for k, v in payload.items() if k not in drop}).encode()


def calls_to(hubspot: Any, e164: str) -> list[dict[str, Any]]:
    return [c for c in hubspot.calls() if c["properties"].get("hs_call_to_number") == e164]


def metric_total(text: str, name: str) -> float:
    """The sum of a counter's samples over all its labels, in Prometheus' text format."""
    pattern = re.compile(rf"^{name}_total(?:{{[^}}]*}})? ([0-9.e+]+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))


def test_the_console_on_a_procfile_deployment(  # type: ignore[no-untyped-def]
    db_kind, redis_server, hubspot, browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    hubspot.reset()
    for email, first, last in [("carol@example.com", "Carol", "Lenoir"),
                               ("dan.petit@example.com", "Dan", "Petit")]:  # fmt: skip
        hubspot.add_owner(email, first, last)
    fakes = Fakes()
    with fakes.kavkom, fakes.kazoo, fakes.uis, fakes.kwebbl:
        fakes.fill()
        platform_apis = {
            "KAVKOM_API_TOKEN": "kavkom-token",
            "KAVKOM_DOMAIN_UUID": DOMAIN,
            "KAVKOM_API_BASE_URL": fakes.kavkom.url,
            "KAZOO_API_URL": fakes.kazoo.url,
            "KAZOO_ACCOUNT_ID": ACCOUNT,
            "KAZOO_AUTH_TOKEN": "kazoo-token",
            "UIS_ACCESS_TOKEN": "uis-token",
            "UIS_VIRTUAL_PHONE_NUMBER": "74993720692",
            "UIS_DATA_API_URL": fakes.uis.data_url,
            "KWEBBL_ACCESS_TOKEN": fakes.kwebbl_token,
            "KWEBBL_API_BASE_URL": fakes.kwebbl.url,
        }
        env = {"MAPPINGS_DIR": str(mappings), **platform_apis}
        deployment = start_deployment(db_kind, redis_server.url, hubspot, tmp_path, env)
        try:
            run_the_console(deployment, hubspot, browser, mappings, expect)
        finally:
            deployment.stop()


def run_the_console(
    deployment: Any, hubspot: Any, browser: Any, mappings: Path, expect: Any
) -> None:
    base = deployment.base
    link = deployment.command("admin", "link", "ops@example.com").strip()
    assert link.startswith(base + "/admin/signin?t=")
    page = browser.new_context(viewport={"width": 1366, "height": 800}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(link)
    assert "?t=" not in page.url  # the token left the address bar
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    scrape = page.request.get(base + "/metrics")
    assert scrape.status == 200
    before = scrape.text()

    # 1. A call logged normally.
    hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 12 34 56 21")
    url = base + "/webhooks/kavkom"
    assert http("POST", url, cdr("console-ok", "33612345621"), AUTH)[0] == 200
    wait_until(lambda: calls_to(hubspot, "+33612345621"), timeout=60)
    # 2. A call HubSpot refuses (a validation error on the create).
    hubspot.fail_next(1, 400, path_prefix="/crm/v3/objects/calls")
    assert http("POST", url, cdr("console-refused", "33612345622"), AUTH)[0] == 200
    # 3. A delivery no rule of kavkom.yaml reads: an event name the file does not know, and
    # no live-call `state` (which the live-call rule would read).
    unknown = cdr("console-unmapped", "33612345623", event="cdr_v2", drop=("state",))
    status, body = http("POST", url, unknown, AUTH)
    assert (status, body["status"]) == (200, "unmapped"), body

    page.goto(base + "/admin/calls")
    logged = page.locator("tbody tr", has_text="+33 6 12 34 56 21")
    expect(logged).to_contain_text("logged")
    expect(logged.get_by_role("link", name=re.compile(r"^call \d+$"))).to_be_visible()
    screenshot(page, "procfile-console-calls")

    # The failed call, with HubSpot's reason, is retried now that HubSpot takes it again.
    def problems_show(text: str) -> bool:
        page.goto(base + "/admin/problems")
        return text in page.content()

    wait_until(lambda: problems_show("+33 6 12 34 56 22"), timeout=60)
    expect(page.locator("main")).to_contain_text("400")
    screenshot(page, "procfile-console-problems")
    page.get_by_role("button", name=re.compile(r"^Retry call \d+$")).click()
    expect(page.locator(".flash")).to_contain_text("queued")
    wait_until(lambda: calls_to(hubspot, "+33612345622"), timeout=60)

    # The unmapped delivery, grouped with its reason, is replayed once the file is fixed.
    page.goto(base + "/admin/problems")
    expect(page.locator("main")).to_contain_text("kavkom")
    kavkom = mappings / "kavkom.yaml"
    fixed = kavkom.read_text().replace("when: {event: cdr}", "when: {event: [cdr, cdr_v2]}")
    assert fixed != kavkom.read_text()
    kavkom.write_text(fixed)
    page.locator("summary", has_text="delivery").first.click()  # the group's deliveries
    page.get_by_role("button", name=re.compile(r"^Replay delivery \d+$")).click()
    expect(page.locator(".flash")).to_contain_text("queued")
    wait_until(lambda: calls_to(hubspot, "+33612345623"), timeout=60)

    # A barrier call: everything queued before it has been handled; each call landed once.
    hubspot.add_contact(firstname="Grace", lastname="Hopper", phone="06 12 34 56 24")
    assert http("POST", url, cdr("console-barrier", "33612345624"), AUTH)[0] == 200
    wait_until(lambda: calls_to(hubspot, "+33612345624"), timeout=60)
    for e164 in ("+33612345621", "+33612345622", "+33612345623"):
        assert len(calls_to(hubspot, e164)) == 1, e164

    # The replayed call's story: its delivery (unmapped, then replayed) and HubSpot's answer.
    page.goto(base + "/admin/calls?number=0612345623")
    page.get_by_role("link", name=re.compile("story", re.I)).first.click()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    timeline = page.locator("main")
    expect(timeline).to_contain_text("/crm/v3/objects/calls")
    expect(timeline).to_contain_text("201")
    expect(timeline).to_contain_text("cdr_v2")
    assert KAVKOM_SECRET not in page.content()
    screenshot(page, "procfile-console-story")

    # /metrics moved: deliveries and HubSpot requests counted since the first scrape.
    after = page.request.get(base + "/metrics").text()
    for name in ("callhook_webhook_deliveries", "callhook_hubspot_requests"):
        assert metric_total(after, name) > metric_total(before, name), name

    # Discovery: the platforms' fake APIs, matched to HubSpot owners, as a diff to copy.
    proposed = deployment.command("agents", "discover")
    assert "+  - email: carol@example.com" in proposed
    assert "kazoo-token" not in proposed
    page.context.close()
