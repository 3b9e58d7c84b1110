"""Kavkom: each published payload → the canonical events `mappings/kavkom.yaml` makes of it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, load_fixture
from webhook_receiver.mapping import MappingError, load_mappings, map_payload


@pytest.fixture(scope="module")
def kavkom():  # type: ignore[no-untyped-def]
    return load_mappings(ROOT / "mappings").platforms["kavkom"]


def events_of(mapping, name: str, region: str = "US") -> list[dict]:  # type: ignore[no-untyped-def]
    result = map_payload(mapping, json.loads(load_fixture("kavkom", name)), default_region=region)
    return [e.to_json() for e in result.events]


def test_seed_cdr_is_a_final_outbound_record(kavkom) -> None:  # type: ignore[no-untyped-def]
    # The number has no "+": it still reads as French whatever DEFAULT_REGION is.
    assert events_of(kavkom, "cdr__outbound.json", region="US") == [
        {
            "platform": "kavkom",
            "call_id": "a1b2c3d4-...-ef1234567890",
            "stage": "cdr",
            "linked_call_ids": [],
            "direction": "outbound",
            "external_number": "+33612345678",
            "external_number_raw": "33612345678",
            "duration_s": 120,
            "variables": {},
        }
    ]


def test_websocket_active_message_is_an_answered_inbound_call(kavkom) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(kavkom, "call__active_inbound.json")
    assert event["stage"] == "answered"
    assert event["call_id"] == "abc-123"
    assert event["direction"] == "inbound"
    assert event["external_number"] == "+380501234567"
    assert event["agent"] == "1001"
    # createdEpoch 1710763200 / answeredEpoch 1710763205
    assert event["started_at"] == "2024-03-18T12:00:00Z"
    assert event["answered_at"] == "2024-03-18T12:00:05Z"


def test_websocket_states_map_to_stages(kavkom) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kavkom, "call__ringing_inbound.json")[0]["stage"] == "ringing"
    assert events_of(kavkom, "call__finished_inbound.json")[0]["stage"] == "ended"


def test_live_webhook_keeps_admin_variables(kavkom) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(kavkom, "live__ringing_inbound_with_variables.json", region="FR")
    assert event["stage"] == "ringing"
    assert event["agent"] == "901"
    assert event["variables"] == {"campaign": "spring-promo", "crm_source": "website"}


def test_heartbeat_is_known_and_ignored(kavkom) -> None:  # type: ignore[no-untyped-def]
    result = map_payload(
        kavkom, json.loads(load_fixture("kavkom", "ping.json")), default_region="FR"
    )
    assert result.events == [] and result.ignored


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {"event": "call", "data": {"callUuid": "x", "state": "exploded"}},
            "stage: state 'exploded' is not one of: active, finished, held, ringing",
        ),
        (
            {"event": "cdr", "direction": "outbound", "number": "33612345678"},
            "call_id: callUuid is missing",
        ),
        ({"event": "call", "data": "not an object"}, "root 'data' is not an object"),
        ({"hello": "world"}, "no event rule matches this payload"),
    ],
)
def test_unreadable_payloads_say_why(kavkom, payload, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MappingError) as info:
        map_payload(kavkom, payload, default_region="FR")
    assert reason in str(info.value)
