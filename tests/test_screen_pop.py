"""Screen-pops end to end: webhook → worker → CRM lookup → the agent's SSE stream.

What an agent sees on /agent while their phone rings: the caller's name, company,
owner and record link; the card follows the call (answered, ended); a colleague's
pick-up withdraws it; nobody else ever sees it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import KAVKOM_SECRET, Environment, EventStream, LiveServer, load_fixture
from worker.agent_links import create_link, revoke

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
    """Kavkom's live-call webhook (fixture from the seed's call payload), for one agent leg."""
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


def test_ring_group_answered_by_one_withdraws_the_others(live_server, hubspot, pages) -> None:  # type: ignore[no-untyped-def]
    post(live_server, live("pop-2", "ringing", "1001", "33612345641"))
    post(live_server, live("pop-2", "ringing", "1002", "33612345641"))
    assert card(pages["alice"])["state"] == "ringing"
    assert card(pages["bob"])["state"] == "ringing"
    post(live_server, live("pop-2", "active", "1002", "33612345641"))
    assert card(pages["bob"])["state"] == "answered"
    assert card(pages["alice"])["state"] == "withdrawn"


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
    from webhook_receiver import agent_page

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
