"""The agents page in headless Chromium: issue a link, open it, revoke it; see the diff.

An operator signs in, issues Alice's link from the agents page (shown once, in a read-only
box), the link opens Alice's page in another tab; "Revoke links" kills it; the discovery
page shows the proposed agents.yaml lines in a block to copy.

Set CALLHOOK_SCREENSHOTS to a folder to keep screenshots of the pages.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import needs_chromium, screenshot
from tests.conftest import ROOT, TOKEN, Environment, LiveServer, RedisServer
from tests.conftest import fresh_database as new_database
from tests.console_sign_in import signed_in_page
from tests.fake_hubspot import FakeHubSpot
from tests.platforms.kavkom.fake_api import FakeKavkom

pytestmark = needs_chromium

AGENTS = """\
kind: agents
agents:
  - email: alice@example.com
    name: Alice Martin
    extensions:
      kavkom: ["1001"]
"""
DOMAIN = "ddcfeb62-110f-4bd7-b7a9-965e1a78295f"


@pytest.fixture(scope="module")
def server(
    redis_server: RedisServer, hubspot: FakeHubSpot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    from worker.reports.agent_discovery import forget_owners

    tmp = tmp_path_factory.mktemp("console-agents-browser")
    mappings = tmp / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    (mappings / "agents.yaml").write_text(AGENTS)
    with FakeKavkom(token="kavkom-token", domain_uuid=DOMAIN, extensions=[]) as kavkom:
        kavkom.describe("1001", "Alice Martin")
        kavkom.describe("1002", "Dan Petit")
        env = Environment()
        env.set({
            "DATABASE_URL": new_database("sqlite", tmp), "REDIS_URL": redis_server.url,
            "MAPPINGS_DIR": str(mappings), "INSTANCE_DIR": str(tmp / "instance"),
            "DEFAULT_REGION": "FR", "HUBSPOT_ACCESS_TOKEN": TOKEN,
            "HUBSPOT_BASE_URL": hubspot.url, "WEB_THREADS": "1000",
            "KAVKOM_API_TOKEN": "kavkom-token", "KAVKOM_DOMAIN_UUID": DOMAIN,
            "KAVKOM_API_BASE_URL": kavkom.url,
        })  # fmt: skip
        hubspot.reset()
        hubspot.add_owner("alice@example.com", "Alice", "Martin")
        hubspot.add_owner("dan.petit@example.com", "Dan", "Petit")
        forget_owners()
        live = LiveServer()
        yield live
        live.close()
        forget_owners()
        env.restore()
        hubspot.reset()


def test_issue_open_and_revoke_a_link_then_copy_the_discovery_diff(
    browser: Any, server: LiveServer
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(browser, server.url)
    page.goto(f"{server.url}/admin/agents")
    expect(page.get_by_role("heading", name="Agents", exact=True)).to_be_visible()
    row = page.get_by_role("row", name="Alice Martin")
    expect(row).to_contain_text("Alice Martin · id")
    expect(row).to_contain_text("not open")

    page.get_by_role("button", name="Issue link for alice@example.com").click()
    box = page.get_by_label("Personal link")
    expect(box).to_be_focused()  # ready to copy
    link = box.input_value()
    assert link.startswith(server.url + "/agent?k=")
    expect(row).to_contain_text("1 active link")
    screenshot(page, "console-agents-link-issued")

    agent = page.context.new_page()
    agent.goto(link)
    expect(agent.locator("body")).to_contain_text("Alice Martin")

    page.get_by_role("button", name="Revoke links of alice@example.com").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked 1 link of alice@example.com.")
    expect(page.get_by_label("Personal link")).to_have_count(0)  # shown once only
    refused = page.context.new_page()
    refused.goto(link)
    expect(refused.locator("body")).to_contain_text("was revoked")

    page.get_by_role("link", name="Find agents on your platforms").click()
    expect(page.get_by_role("heading", name="Kavkom")).to_be_visible()
    diff = page.locator("pre")
    expect(diff).to_contain_text("+  - email: dan.petit@example.com")
    expect(diff).not_to_contain_text("alice@example.com")
    screenshot(page, "console-agents-discover")
    page.context.close()
