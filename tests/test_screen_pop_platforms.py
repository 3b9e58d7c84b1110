"""Every platform that sends a ringing event pops the caller's card for the right agent.

Each platform's own published payload (tests/platforms/<platform>/fixtures), posted the
way the platform posts it, reaches Alice (mappings/agents.yaml names her identifiers on
each platform) and never Bob.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import WEBHOOK_SECRETS, EventStream, LiveServer, load_fixture
from tests.test_screen_pop import _pages_per_agent, agent_stream  # noqa: F401  (a fixture)

FORM = "application/x-www-form-urlencoded"
# (platform, fixtures posted in order, the caller's number on the card)
RINGING = [
    ("kwebbl", ["ringing__via_dialplan_inbound.json"], "+31612345678"),
    ("kwebbl", ["ringing__agent_leg_of_inbound.json"], "+31101111111"),
    ("kazoo", ["channel_create__inbound_customer_leg.form",
               "channel_create__inbound_agent_leg.form"], "+33645218790"),
    ("uis", ["waiting_for_answer__inbound.json"], "+79261234567"),
]  # fmt: skip


def post(server: LiveServer, platform: str, fixture: str) -> None:
    body = load_fixture(platform, fixture)
    headers = {"Content-Type": FORM if fixture.endswith(".form") else "application/json"}
    response = requests.post(
        f"{server.url}/webhooks/{platform}?token={WEBHOOK_SECRETS[platform]}",
        data=body, headers=headers, timeout=10,
    )  # fmt: skip
    assert response.status_code == 200, response.text


@pytest.fixture
def pages(live_server: LiveServer) -> Iterator[dict[str, EventStream]]:
    opened = {
        name: agent_stream(live_server, email)
        for name, email in (("alice", "alice@example.com"), ("bob", "bob@example.com"))
    }
    assert [stream.status for stream in opened.values()] == [200, 200]
    yield opened
    for stream in opened.values():
        stream.close()


@pytest.mark.parametrize(("platform", "fixtures", "number"), RINGING)
def test_ringing_event_pops_for_the_mapped_agent(
    live_server: LiveServer, hubspot: Any, pages: dict[str, EventStream],
    platform: str, fixtures: list[str], number: str,
) -> None:  # fmt: skip
    hubspot.add_contact(firstname="Known", lastname="Caller", phone=number)
    for fixture in fixtures:
        post(live_server, platform, fixture)
    card: dict[str, Any] = {}
    while card.get("platform") != platform or card.get("number") != number:
        card = json.loads(pages["alice"].next_event()["data"])
    assert card["state"] == "ringing"
    assert card["contact"]["name"] == "Known Caller"
    assert pages["bob"].nothing_within(1.0)
