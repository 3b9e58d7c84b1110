"""Kwebbl: each published payload → the canonical events `mappings/kwebbl.yaml` makes of it.

The fixtures and their repairs are listed in fixtures/SOURCES.md. DEFAULT_REGION is FR in
the tests, so the document's Dutch numbers ("31101111111": E.164 without "+") must still
read as Dutch.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.conftest import ROOT, load_fixture
from webhook_receiver.mapping import MappingError, MapResult, load_mappings, map_payload
from worker.core.events import CallEvent
from worker.core.fold import apply_event, state_hash
from worker.core.models import Call

SEED_CALL = "4a2bcad2-c4b9e70a"  # the call of every example in the document
AGENT_LEG = "fd8265472-8c34a51b"  # its second leg, in the "Bridged" example
CALLER_EXTENSION = "abcdef123456abcdef123456abcdef12"  # `from` of the examples
AGENT_EXTENSION = "def456789abcdef456789abcdef45678"  # `calls[1].to`, `after.from`


@pytest.fixture(scope="module")
def kwebbl():  # type: ignore[no-untyped-def]
    return load_mappings(ROOT / "mappings").platforms["kwebbl"]


def payload(name: str) -> dict[str, Any]:
    return json.loads(load_fixture("kwebbl", name))


def mapped(mapping, name: str) -> MapResult:  # type: ignore[no-untyped-def]
    return map_payload(mapping, payload(name), default_region="FR")


def events_of(mapping, name: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [e.to_json() for e in mapped(mapping, name).events]


# -- the document's examples ---------------------------------------------------------


def test_created_starts_a_ringing_inbound_call_from_an_anonymous_caller(kwebbl) -> None:  # type: ignore[no-untyped-def]
    # Inbound: `from` is the caller, here with no number and caller_id "anonymous";
    # `to` carries a public number, so it is the company's, not an agent.
    assert events_of(kwebbl, "created__seed_inbound_anonymous.json") == [
        {
            "platform": "kwebbl",
            "call_id": SEED_CALL,
            "stage": "ringing",
            "linked_call_ids": [],
            "direction": "inbound",
            "external_number_raw": "anonymous",
            "company_number": "+31101111111",
            "occurred_at": "2016-08-30T14:02:06.435000Z",
            "variables": {},
        }
    ]
    assert mapped(kwebbl, "created__seed_inbound_anonymous.json").dedupe_key == "a1b2c3d0:created"


def test_ringing_is_ringing_with_milliseconds_kept(kwebbl) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(kwebbl, "ringing__seed_inbound_anonymous.json")
    assert event["stage"] == "ringing"
    assert event["direction"] == "inbound"
    assert event["occurred_at"] == "2016-08-30T14:02:06.635000Z"
    assert "external_number" not in event and "agent" not in event


def test_answered_inbound_names_no_agent(kwebbl) -> None:  # type: ignore[no-untyped-def]
    # The caller's leg may go to a dialplan: the agent comes from the agent's leg and
    # from `bridged` (see the mapping's comments).
    assert events_of(kwebbl, "answered__seed_inbound.json") == [
        {
            "platform": "kwebbl",
            "call_id": SEED_CALL,
            "stage": "answered",
            "linked_call_ids": [],
            "direction": "inbound",
            "external_number_raw": "anonymous",
            "company_number": "+31101111111",
            "occurred_at": "2016-08-30T14:02:16.635000Z",
            "variables": {},
        }
    ]


def test_bridged_links_every_leg_to_the_callers_call(kwebbl) -> None:  # type: ignore[no-untyped-def]
    leg = {
        "platform": "kwebbl",
        "stage": "answered",
        "parent_call_id": SEED_CALL,
        "linked_call_ids": [],
        "agent": AGENT_EXTENSION,
        "occurred_at": "2016-08-30T14:02:16.635000Z",
        "variables": {},
    }
    assert events_of(kwebbl, "bridged__seed_two_legs.json") == [
        {**leg, "call_id": SEED_CALL},
        {**leg, "call_id": AGENT_LEG},
    ]
    # The document gives this event the id of `answered` (a1b2c3d3); the fixture uses
    # a1b2c3d1, and the dedupe key carries the event type anyway.
    assert mapped(kwebbl, "bridged__seed_two_legs.json").dedupe_key == "a1b2c3d1:bridged"


def test_holding_is_held_on_an_outbound_call_to_a_dutch_number(kwebbl) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kwebbl, "holding__seed_outbound.json") == [
        {
            "platform": "kwebbl",
            "call_id": SEED_CALL,
            "stage": "held",
            "linked_call_ids": [],
            "direction": "outbound",
            "external_number": "+31101111111",
            "external_number_raw": "31101111111",
            "occurred_at": "2016-08-30T14:03:06.635000Z",
            "variables": {},
        }
    ]


def test_resumed_is_resumed(kwebbl) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(kwebbl, "resumed__seed_outbound.json")
    assert (event["stage"], event["direction"], event["external_number"]) == (
        "resumed",
        "outbound",
        "+31101111111",
    )
    assert event["occurred_at"] == "2016-08-30T14:03:36.635000Z"


def test_resume_as_the_event_list_spells_it_is_resumed_too(kwebbl) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(kwebbl, "resume__list_spelling_outbound.json")
    (seed,) = events_of(kwebbl, "resumed__seed_outbound.json")
    assert event == seed


@pytest.mark.parametrize(
    "name",
    [
        "start-recording__seed_outbound.json",
        "stop-recording__seed_outbound.json",
        "start_recording__list_spelling_outbound.json",
        "stop_recording__list_spelling_outbound.json",
    ],
)
def test_recording_events_are_known_and_ignored(kwebbl, name: str) -> None:  # type: ignore[no-untyped-def]
    # They carry no recording URL: nothing for the call record.
    result = mapped(kwebbl, name)
    assert result.events == [] and result.ignored


def test_terminated_ends_the_call_and_leaves_the_outcome_to_the_fold(kwebbl) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kwebbl, "terminated__seed_hangup_outbound.json") == [
        {
            "platform": "kwebbl",
            "call_id": SEED_CALL,
            "stage": "ended",
            "linked_call_ids": [],
            "direction": "outbound",
            "external_number": "+31101111111",
            "external_number_raw": "31101111111",
            "occurred_at": "2016-08-30T14:20:36.635000Z",
            "hangup_cause": "hangup",
            "variables": {},
        }
    ]


def test_transferred_names_the_new_agent(kwebbl) -> None:  # type: ignore[no-untyped-def]
    # before.from 010 (abcdef…) → after.from 030 (def456…); the initiator (020) is not
    # the agent who has the call now.
    assert events_of(kwebbl, "transferred__seed_blind.json") == [
        {
            "platform": "kwebbl",
            "call_id": SEED_CALL,
            "stage": "transferred",
            "linked_call_ids": [],
            "agent": AGENT_EXTENSION,
            "occurred_at": "2016-08-30T14:20:36.635000Z",
            "variables": {},
        }
    ]


# -- shapes built from the documented fields -------------------------------------------


def test_ringing_through_a_dialplan_names_the_caller_and_the_agent(kwebbl) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kwebbl, "ringing__via_dialplan_inbound.json") == [
        {
            "platform": "kwebbl",
            "call_id": "0123456789abcdef0123456789abcdef",
            "stage": "ringing",
            "linked_call_ids": [],
            "direction": "inbound",
            "external_number": "+31612345678",
            "external_number_raw": "+31612345678",
            # via 345 and to 1000 are internal numbers: no company number.
            "agent": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "occurred_at": "2019-08-21T09:00:00.123000Z",
            "variables": {},
        }
    ]


def test_the_agents_leg_of_an_inbound_call_rings_as_inbound(kwebbl) -> None:  # type: ignore[no-untyped-def]
    # Kwebbl says "outbound" (it calls the agent's phone); for the agent it is the
    # caller ringing, so the pop can show the caller before `bridged` links the leg.
    assert events_of(kwebbl, "ringing__agent_leg_of_inbound.json") == [
        {
            "platform": "kwebbl",
            "call_id": AGENT_LEG,
            "stage": "ringing",
            "linked_call_ids": [],
            "direction": "inbound",
            "external_number": "+31101111111",
            "external_number_raw": "31101111111",
            "agent": AGENT_EXTENSION,
            "occurred_at": "2016-08-30T14:02:07.635000Z",
            "variables": {},
        }
    ]


def test_the_end_of_the_agents_leg_is_ignored(kwebbl) -> None:  # type: ignore[no-untyped-def]
    # Else every phone of a ring group that did not pick up would log a missed call.
    result = mapped(kwebbl, "terminated__agent_leg_of_inbound.json")
    assert result.events == []
    assert result.ignored == "agent leg of an inbound call, later events: stage is ignored"


# -- what `reason` adds to the outcome ---------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("hangup", None),  # the one documented value: the fold infers the outcome
        ("busy", "busy"),
        ("Rejected", "busy"),
        ("no_answer", "no_answer"),
        ("cancelled", "canceled"),
        ("failed", "failed"),
        ("something-new", None),  # unknown reasons are not guessed, nor refused
    ],
)
def test_terminated_reason_sets_the_outcome_only_when_it_says_more(  # type: ignore[no-untyped-def]
    kwebbl, reason: str, outcome: str | None
) -> None:
    body = {**payload("terminated__seed_hangup_outbound.json"), "reason": reason}
    (event,) = map_payload(kwebbl, body, default_region="FR").events
    assert event.outcome == outcome
    assert event.hangup_cause == reason


# -- the whole example call, in any order -------------------------------------------------

SEED_FIXTURES = [
    "created__seed_inbound_anonymous.json",
    "ringing__seed_inbound_anonymous.json",
    "ringing__agent_leg_of_inbound.json",
    "answered__seed_inbound.json",
    "bridged__seed_two_legs.json",
    "holding__seed_outbound.json",
    "resumed__seed_outbound.json",
    "start-recording__seed_outbound.json",
    "stop-recording__seed_outbound.json",
    "transferred__seed_blind.json",
    "terminated__agent_leg_of_inbound.json",
    "terminated__seed_hangup_outbound.json",
]


def fold(events: list[CallEvent]) -> Call:
    call = Call(platform="kwebbl", platform_call_id=SEED_CALL)
    for event in events:
        apply_event(call, event)
    return call


def test_the_documents_call_folds_the_same_whatever_the_order(kwebbl) -> None:  # type: ignore[no-untyped-def]
    events = [e for name in SEED_FIXTURES for e in mapped(kwebbl, name).events]
    expected = fold(events)
    # The document's examples switch from "inbound" to "outbound" mid-call; the
    # strongest event of the call's own leg (terminated) decides.
    assert expected.ended and expected.outcome == "answered"
    assert (expected.direction, expected.external_number) == ("outbound", "+31101111111")
    assert expected.agent == AGENT_EXTENSION
    assert expected.started_at is not None and expected.started_at.isoformat() == (
        "2016-08-30T14:02:06.435000+00:00"
    )
    assert expected.answered_at is not None and expected.answered_at.isoformat() == (
        "2016-08-30T14:02:16.635000+00:00"
    )
    assert expected.ended_at is not None and expected.ended_at.isoformat() == (
        "2016-08-30T14:20:36.635000+00:00"
    )
    shuffler = random.Random(20160830)
    for _ in range(200):
        order = shuffler.sample(events, len(events))
        assert state_hash(fold(order)) == state_hash(expected), order
    assert state_hash(fold(events + events[::-1])) == state_hash(expected)  # all twice


# -- what is refused, and why ------------------------------------------------------------


def seed(name: str, **changes: Any) -> dict[str, Any]:
    body = payload(name)
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # An event type the document does not list falls through every rule.
        (seed("ringing__seed_inbound_anonymous.json", event_type="parked"), "no event rule"),
        # `direction` is what says who the customer is: without it, nothing is guessed.
        (seed("ringing__seed_inbound_anonymous.json", direction=None), "no event rule"),
        (seed("ringing__seed_inbound_anonymous.json", direction="internal"), "no event rule"),
        # The document's own `created` example, unrepaired, has no call_id.
        (
            seed("created__seed_inbound_anonymous.json", call_id=None),
            "inbound, created or ringing: call_id: call_id is missing",
        ),
        (
            seed("ringing__seed_inbound_anonymous.json", time="30/08/2016 14:02"),
            "occurred_at: not an ISO 8601 time: '30/08/2016 14:02'",
        ),
        (seed("bridged__seed_two_legs.json", calls=[]), "bridged: foreach 'calls' is not"),
        ({"id": "x1", "hello": "world"}, "no event rule matches this payload"),
    ],
)
def test_unreadable_payloads_say_why(kwebbl, body: dict[str, Any], reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MappingError) as info:
        map_payload(kwebbl, body, default_region="FR")
    assert reason in str(info.value)


def test_transferred_to_an_external_number_names_the_extension_on_the_other_side(kwebbl) -> None:  # type: ignore[no-untyped-def]
    body = payload("transferred__seed_blind.json")
    body["after"] = {"from": {"number": "030"}, "to": {"number": "+31612345678"}}
    (event,) = map_payload(kwebbl, body, default_region="FR").events
    assert event.agent == "030"  # an external number is never an agent
