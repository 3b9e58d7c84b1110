"""Screen-pops end to end: webhook → worker → CRM lookup → the agent's SSE stream.

What an agent sees on /agent while their phone rings: the caller's name, company,
owner and record link; the card follows the call (answered, ended); a colleague's
pick-up withdraws it; nobody else ever sees it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import (
    KAVKOM_SECRET,
    ROOT,
    Environment,
    EventStream,
    LiveServer,
    load_fixture,
)
from worker.core.agent_links import create_link, revoke

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}


@pytest.fixture(scope="module", autouse=True)
def _pages_per_agent(stack: dict[str, Any]) -> Iterator[None]:
    """Tests open and close an agent's pages faster than a closed one frees its slot (at
    the next heartbeat): no per-agent cap here, as conftest lifts the process's.
    tests/test_agent_links.py checks the cap itself. Modules that open agent pages import
    this fixture."""
    env = Environment()
    env.set({"AGENT_STREAMS_PER_AGENT": "100"})
    yield
    env.restore()


def agent_stream(server: LiveServer, email: str, **headers: str) -> EventStream:
    """An agent page's stream, opened as the page opens it: the token in a header."""
    token = create_link(email)
    return EventStream(f"{server.url}/agent/stream", headers={"X-Callhook-Agent": token, **headers})


def live(call_id: str, state: str, extension: str, number: str) -> dict[str, Any]:
    """Kavkom's live-call webhook (the call payload of Kavkom's API docs), one agent leg."""
    payload = json.loads(load_fixture("kavkom", "live__ringing_inbound_with_variables.json"))
    payload.update(callUuid=call_id, state=state, number=number,
                   presenceId=f"{extension}@client.kavkom.com")  # fmt: skip
    return payload


def post(server: LiveServer, payload: dict[str, Any]) -> None:
    response = requests.post(
        f"{server.url}/webhooks/kavkom", json=payload, headers=AUTH, timeout=10
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def pages(live_server: LiveServer, hubspot: Any) -> Iterator[dict[str, EventStream]]:
    hubspot.reset()
    opened = {
        name: agent_stream(live_server, email)
        for name, email in (("alice", "alice@example.com"), ("bob", "bob@example.com"))
    }
    for stream in opened.values():
        assert stream.status == 200
    yield opened
    for stream in opened.values():
        stream.close()


def card(stream: EventStream) -> dict[str, Any]:
    event = stream.next_event()
    assert event["event"] == "card"
    return json.loads(event["data"])


def test_ringing_call_pops_the_contact_for_that_agent_only(live_server, hubspot, pages) -> None:  # type: ignore[no-untyped-def]
    owner = hubspot.add_owner("carol@example.com", "Carol", "Owner")
    contact = hubspot.add_contact(firstname="Ada", lastname="Lovelace", company="Analytical Ltd",
                                  phone="06 12 34 56 40", hubspot_owner_id=owner)  # fmt: skip
    post(live_server, live("pop-1", "ringing", "1001", "33612345640"))
    ringing = card(pages["alice"])
    assert ringing["state"] == "ringing"
    assert ringing["number_display"] == "+33 6 12 34 56 40"
    assert ringing["contact"] == {
        "id": contact,
        "name": "Ada Lovelace",
        "company": "Analytical Ltd",
        "owner": "Carol Owner",
        "url": f"https://app-eu1.hubspot.com/contacts/26123456/record/0-1/{contact}",
    }
    post(live_server, live("pop-1", "active", "1001", "33612345640"))
    assert card(pages["alice"])["state"] == "answered"
    post(live_server, live("pop-1", "finished", "1001", "33612345640"))
    assert card(pages["alice"])["state"] == "ended"
    assert pages["bob"].nothing_within(1.5)
    assert "deal" not in ringing  # open deals are not asked for (associations.open_deal)


def test_the_card_shows_the_open_deal_when_the_crm_file_asks_for_it(  # type: ignore[no-untyped-def]
    live_server, hubspot, pages, tmp_path
) -> None:
    """Open deals cost a search: asked only with `associations.open_deal`, after the card
    is shown (the phone rings now), once for a ring group's cards."""
    from worker.core.db import session_scope
    from worker.core.models import Call, utcnow
    from worker.tasks import pops

    contact = hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 12 34 56 45")
    hubspot.add_deal("Old deal", contact, closed=True)
    deal = hubspot.add_deal("Renewal 2027", contact, amount="12000")
    folder = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", folder)
    crm_file = folder / "hubspot.yaml"
    crm_file.write_text(crm_file.read_text().replace("open_deal: false", "open_deal: true"))
    with session_scope() as session:
        call = Call(platform="kavkom", platform_call_id="pop-deal", direction="inbound",
                    external_number="+33612345645", agent="1001", started_at=utcnow())  # fmt: skip
        session.add(call)
        session.flush()
        call_id = call.id
    env = Environment()
    env.set({"MAPPINGS_DIR": str(folder)})
    try:  # the screen_pop task's work, in this process so that it reads the copy
        pops.ring(call_id, "alice@example.com")
        pops.ring(call_id, "bob@example.com")
    finally:
        env.restore()
    first, second = card(pages["alice"]), card(pages["alice"])
    assert first["contact"]["name"] == "Ada Lovelace" and "deal" not in first
    assert second["deal"] == {
        "id": deal, "name": "Renewal 2027", "amount": "12000",
        "url": f"https://app-eu1.hubspot.com/contacts/26123456/record/0-3/{deal}",
    }  # fmt: skip
    assert card(pages["bob"])["contact"]["id"] == contact
    assert card(pages["bob"])["deal"]["id"] == deal
    searches = [r for r in hubspot.requests() if r["path"] == "/crm/v3/objects/deals/search"]
    assert len(searches) == 1  # one search for the ring group
    with session_scope() as session:  # over: the next tests' pages must not replay it
        ended = session.get(Call, call_id)
        assert ended is not None
        ended.ended, ended.stage = True, "ended"
    pops.update({call_id})
    assert card(pages["alice"])["state"] == "ended"


def test_ring_group_answered_by_one_withdraws_the_others(live_server, hubspot, pages) -> None:  # type: ignore[no-untyped-def]
    post(live_server, live("pop-2", "ringing", "1001", "33612345641"))
    post(live_server, live("pop-2", "ringing", "1002", "33612345641"))
    assert card(pages["alice"])["state"] == "ringing"
    assert card(pages["bob"])["state"] == "ringing"
    post(live_server, live("pop-2", "active", "1002", "33612345641"))
    assert card(pages["bob"])["state"] == "answered"
    assert card(pages["alice"])["state"] == "withdrawn"
    # The end is Bob's: his card ends (and offers him the wrap-up); Alice's stays withdrawn.
    post(live_server, live("pop-2", "finished", "1002", "33612345641"))
    ended = card(pages["bob"])
    assert (ended["state"], ended["answered"]) == ("ended", True)
    assert pages["alice"].nothing_within(1.5)


def test_unknown_caller_gets_a_create_contact_action_and_one_placeholder(  # type: ignore[no-untyped-def]
    live_server, hubspot, pages
) -> None:
    post(live_server, live("pop-3", "ringing", "1001", "33612345642"))
    unknown = card(pages["alice"])
    assert unknown["contact"] is None and unknown["number"] == "+33612345642"
    headers = {"X-Callhook-Agent": create_link("alice@example.com")}
    url = f"{live_server.url}/agent/contact"
    first = requests.post(url, json={"number": unknown["number"]}, headers=headers, timeout=10)
    second = requests.post(url, json={"number": unknown["number"]}, headers=headers, timeout=10)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["contact_id"] == second.json()["contact_id"]
    created = [c for c in hubspot.objects["contacts"].values()
               if c["properties"].get("phone") == "+33612345642"]  # fmt: skip
    assert len(created) == 1
    assert created[0]["properties"]["firstname"] == "Caller"
    assert created[0]["properties"]["lastname"] == "+33 6 12 34 56 42"
    bad = requests.post(url, json={"number": "12"}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "not a phone number" in bad.json()["reason"]
    # A lone surrogate (JSON can carry one) is no text: refused, never a 500.
    for path, field in (("/agent/contact", "number"), ("/agent/call", "to")):
        broken = requests.post(f"{live_server.url}{path}", data=f'{{"{field}": "\\ud800"}}',
                               headers={**headers, "Content-Type": "application/json"},
                               timeout=10)  # fmt: skip
        assert broken.status_code == 400 and "not valid text" in broken.json()["reason"]


def test_reconnecting_page_replays_what_is_still_ringing(live_server, hubspot) -> None:  # type: ignore[no-untyped-def]
    token = create_link("alice@example.com")
    first = EventStream(f"{live_server.url}/agent/stream?k={token}")
    post(live_server, live("pop-4", "ringing", "1001", "33612345643"))
    event = first.next_event()
    while json.loads(event["data"])["call_key"] != "kavkom:pop-4":  # earlier tests' calls
        event = first.next_event()
    first.close()
    # A new tab, or a reconnect without an id: the ringing call is shown at once.
    again = EventStream(f"{live_server.url}/agent/stream?k={token}")
    replayed = [json.loads(again.next_event()["data"])]
    while replayed[-1]["call_key"] != "kavkom:pop-4":
        replayed.append(json.loads(again.next_event()["data"]))
    assert all(c["state"] == "ringing" for c in replayed)  # nothing ended is replayed
    again.close()
    # The browser's automatic reconnect sends Last-Event-ID: only what came after it.
    post(live_server, live("pop-4", "active", "1001", "33612345643"))
    resumed = EventStream(f"{live_server.url}/agent/stream?k={token}",
                          headers={"Last-Event-ID": event["id"]})  # fmt: skip
    after = json.loads(resumed.next_event()["data"])
    assert (after["call_key"], after["state"]) == ("kavkom:pop-4", "answered")
    resumed.close()


def test_forged_and_revoked_links_are_refused(live_server) -> None:  # type: ignore[no-untyped-def]
    assert requests.get(f"{live_server.url}/agent?k=forged", timeout=10).status_code == 403
    token = create_link("bob@example.com")
    assert requests.get(f"{live_server.url}/agent?k={token}", timeout=10).status_code == 200
    revoke("bob@example.com")
    refused = EventStream(f"{live_server.url}/agent/stream?k={token}")
    assert refused.status == 403 and "was revoked" in json.loads(refused.body)["reason"]
    assert "ask your admin for a new link" in json.loads(refused.body)["reason"]


def test_agent_pages_never_take_the_threads_webhooks_need(live_server, hubspot) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import Environment
    from webhook_receiver.web import agent_page

    # Two more streams than are open now (earlier tests' may still be closing), no more.
    env = Environment()
    env.set({"WEBHOOK_THREADS": "8", "WEB_THREADS": str(8 + agent_page._streams_open + 2)})
    try:
        url = f"{live_server.url}/agent/stream?k={create_link('alice@example.com')}"
        first, second = EventStream(url), EventStream(url)
        refused = EventStream(url)
        assert (first.status, second.status, refused.status) == (200, 200, 503)
        assert refused.response.getheader("Retry-After") == "5"
        assert "too many open agent pages" in json.loads(refused.body)["reason"]
        post(live_server, live("pop-full", "ringing", "1001", "33612345644"))  # still served
        first.close()
        second.close()
    finally:
        env.restore()
