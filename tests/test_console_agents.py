"""The console's agents pages: who is listed, their owner, page, links and pops; discovery.

Real app, real database and Redis, the fake HubSpot (owners) and the fake Kavkom (its
extension list); an agent page is opened for real on a live server, and a link issued on
the page is used at /agent, then revoked there and refused.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import (
    ROOT,
    TOKEN,
    Environment,
    EventStream,
    LiveServer,
    RedisServer,
    wait_until,
)
from tests.conftest import fresh_database as new_database
from tests.console_sign_in import signed_in_client
from tests.fake_hubspot import FakeHubSpot
from tests.platforms.kavkom.fake_api import FakeKavkom

AGENTS = """\
kind: agents
agents:
  - email: alice@example.com
    name: Alice Martin
    extensions:
      kavkom: ["1001", "901"]
    dial: {platform: kavkom, id: "901"}
  - email: bob@example.com
    name: Bob Durand
    extensions:
      uis: ["31"]
"""
DOMAIN = "ddcfeb62-110f-4bd7-b7a9-965e1a78295f"
HEADER = "X-Callhook-Agent"


@pytest.fixture(scope="module")
def setup(
    redis_server: RedisServer, hubspot: FakeHubSpot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from worker.reports.agent_discovery import forget_owners

    tmp = tmp_path_factory.mktemp("console-agents")
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
            "PUBLIC_BASE_URL": "https://callhook.example.com",
            "KAVKOM_API_TOKEN": "kavkom-token", "KAVKOM_DOMAIN_UUID": DOMAIN,
            "KAVKOM_API_BASE_URL": kavkom.url,
        })  # fmt: skip
        hubspot.reset()
        alice_owner = hubspot.add_owner("alice@example.com", "Alice", "Martin")
        hubspot.add_owner("dan.petit@example.com", "Dan", "Petit")
        forget_owners()
        live = LiveServer()
        yield {"env": env, "alice_owner": alice_owner, "live": live, "hubspot": hubspot}
        live.close()
        forget_owners()
        env.restore()
        hubspot.reset()


@pytest.fixture
def console(setup: dict[str, Any]) -> Any:
    from webhook_receiver.web import create_app

    return signed_in_client(create_app({"TESTING": True}))


def add_pop(email: str, contact: str) -> int:
    from worker.core.db import session_scope
    from worker.core.models import Call, CallPop

    with session_scope() as session:
        call = Call(platform="kavkom", platform_call_id=f"pop-{contact}", direction="inbound")
        session.add(call)
        session.flush()
        assert call.id is not None
        session.add(CallPop(call_id=call.id, agent_email=email, contact_name=contact))
        return call.id


def owner_requests(hubspot: FakeHubSpot) -> int:
    return len([r for r in hubspot.requests() if r["path"].startswith("/crm/v3/owners")])


def test_the_page_lists_agents_with_their_owner_open_page_links_and_pops(
    setup: dict[str, Any], console: Any
) -> None:
    from webhook_receiver.web.agent_page import open_pages
    from worker.core.agent_links import create_link

    call_ids = [add_pop("alice@example.com", f"Client {n}") for n in range(7)]
    stream = EventStream(
        f"{setup['live'].url}/agent/stream", headers={HEADER: create_link("alice@example.com")}
    )
    try:
        assert stream.status == 200
        wait_until(lambda: open_pages("alice@example.com") == 1)
        before = owner_requests(setup["hubspot"])
        page = console.get("/admin/agents")
        again = console.get("/admin/agents")
    finally:
        stream.close()
    assert page.status_code == 200 and again.status_code == 200
    # One owners listing serves every agent, and the next view too.
    assert owner_requests(setup["hubspot"]) - before <= 1
    html = page.get_data(as_text=True)
    alice, bob = html.split('id="agent-1"')[1].split('id="agent-2"')
    assert "Alice Martin" in alice and "<code>1001, 901</code>" in alice
    assert "<code>kavkom 901</code>" in alice  # dials via
    assert f"Alice Martin · id {setup['alice_owner']}" in alice
    assert '<span class="badge ok">open</span>' in alice and "1 page" in alice
    assert "1 active link" in alice and "latest expires" in alice
    # The last five pops, newest first, each linking to its call.
    linked = re.findall(r'href="/admin/calls/(\d+)"', alice)
    assert linked == [str(i) for i in reversed(call_ids)][:5]
    assert "Client 6" in alice
    assert "no HubSpot owner with this email" in bob and "not open" in bob
    assert "<code>31</code>" in bob and "0 active links" in bob
    assert page.headers["Cache-Control"] == "no-store"


def test_an_issued_link_opens_the_agent_page_until_it_is_revoked(
    setup: dict[str, Any], console: Any
) -> None:
    issued = console.post("/admin/agents/link", data={"email": "bob@example.com"})
    assert issued.status_code == 200
    assert issued.headers["Cache-Control"] == "no-store"
    html = issued.get_data(as_text=True)
    assert "New link for bob@example.com" in html and "shown only this once" in html
    found = re.search(r'value="https://callhook\.example\.com/agent\?k=([^"]+)"', html)
    assert found is not None
    token = found.group(1)
    assert "1 active link" in html.split("bob@example.com</span>")[1]
    # The link works.
    agent = console.application.test_client()
    assert agent.get(f"/agent?k={token}").status_code == 200
    # The page never shows it again.
    assert token not in console.get("/admin/agents").get_data(as_text=True)

    revoked = console.post("/admin/agents/revoke", data={"email": "bob@example.com"})
    assert revoked.status_code == 303 and revoked.headers["Location"].endswith("/admin/agents")
    after = console.get("/admin/agents").get_data(as_text=True)
    assert "Revoked 1 link of bob@example.com." in after
    refused = agent.get(f"/agent?k={token}")
    assert refused.status_code == 403 and "was revoked" in refused.get_data(as_text=True)


def test_links_only_for_listed_agents_and_never_from_another_site(
    setup: dict[str, Any], console: Any
) -> None:
    from sqlmodel import select

    from worker.core.db import session_scope
    from worker.core.models import AgentLink

    with session_scope() as session:
        before = len(session.exec(select(AgentLink)).all())
    unknown = console.post("/admin/agents/link", data={"email": "mallory@example.com"})
    assert unknown.status_code == 303
    assert "Only an agent listed" in console.get("/admin/agents").get_data(as_text=True)
    cross = console.post(
        "/admin/agents/link",
        data={"email": "alice@example.com"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    with session_scope() as session:
        after = len(session.exec(select(AgentLink)).all())
    assert after == before  # neither request made a link
    anonymous = console.application.test_client()
    assert anonymous.get("/admin/agents").status_code == 401
    assert anonymous.post("/admin/agents/revoke", data={"email": "a@b.c"}).status_code == 401


def test_the_discovery_page_shows_matches_and_the_diff_to_copy(
    setup: dict[str, Any], console: Any
) -> None:
    page = console.get("/admin/agents/discover")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Kavkom" in html and "<code>1002</code>" in html
    assert "dan.petit@example.com" in html and "by name" in html
    assert "listed</span> alice@example.com" in html
    pre = html.split("<pre", 1)[1].split("</pre>", 1)[0]
    assert "+++ b/mappings/agents.yaml" in pre and "+  - email: dan.petit@example.com" in pre
    assert "kavkom-token" not in html and "aB3xY9zK" not in html


def test_in_a_dry_run_the_page_says_hubspot_is_not_asked(setup: dict[str, Any]) -> None:
    from webhook_receiver.web import create_app

    setup["env"].set({"HUBSPOT_ACCESS_TOKEN": None})
    try:
        console = signed_in_client(create_app({"TESTING": True}))
        html = console.get("/admin/agents").get_data(as_text=True)
    finally:
        setup["env"].set({"HUBSPOT_ACCESS_TOKEN": TOKEN})
    assert html.count("dry run: HubSpot is not asked") == 2
