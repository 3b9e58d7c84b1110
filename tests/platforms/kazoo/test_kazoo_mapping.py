"""KAZOO: each channel event payload → the canonical events `mappings/kazoo.yaml` makes of it.

Fixtures and their provenance: fixtures/SOURCES.md. Bodies are parsed by the receiver's own
parsers (form with `a[b]` nesting, JSON, the GET query string) so the test reads what the
mapping reads in production.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.conftest import ROOT, load_fixture
from webhook_receiver.mapping import MappingError, load_mappings, map_payload
from webhook_receiver.mapping.payloads import nest, parse_form
from worker.core.events import CallEvent
from worker.core.fold import apply_event
from worker.core.models import Call

OWNER = "d860229e722bf8f738737365b0b1e333"  # the samples' owner_id: our agent
SAMPLE_A = "NDlkNGI3OTZlMDgzNWQxNGYxNTA3NjQ4NDZjNDFkOTc"
SAMPLE_B = "af1e1e12f1bcf519a96f2235ab8eeec4"
IN_A = "SD4kq0b01-3e1f0c7a9d2b4e6f8a0c1d3e5f7a9b2c-06a91u0"
IN_B = "af1e1e12f1bcf519a96f2235ab8eeec4"
OUT_A = "MjY4ZDA5NmQ3YzQ3ZWE0MzE4NmM1ZmI3NDk2NTMwZjI"
OUT_B = "3b6e2d9c4f8a4b1e9d0c7a5f2e1b8c6d"
CUSTOMER, DID, DIALLED = "+33645218790", "+33187654321", "+33645218791"
IN_CCVS = {
    "Bridge-ID": IN_A,
    "Call-Interaction-ID": "63941045400-5f2a9c1e",
    "Global-Resource": "false",
    "Resource-Type": "offnet-origination",
}
IN_VARIABLES = {"campaign": "spring-2026", "custom_channel_vars": IN_CCVS}
OUT_VARIABLES = {
    "custom_channel_vars": {"Bridge-ID": OUT_A, "Call-Interaction-ID": "63941048100-0c9d8e7f"}
}


@pytest.fixture(scope="module")
def kazoo():  # type: ignore[no-untyped-def]
    return load_mappings(ROOT / "mappings").platforms["kazoo"]


def payload_of(name: str) -> dict[str, Any]:
    raw = load_fixture("kazoo", name)
    if name.endswith(".form"):
        return parse_form(raw)
    if name.endswith(".query"):
        # A GET hook's URI is ".../webhooks/kazoo?token=<secret>&"; KAZOO appends "?<payload>"
        # after it, so the payload's first key arrives as "?account_id". The receiver drops
        # the token and nests the rest, as here.
        pairs = parse_qsl(f"token=s&?{raw.decode()}", keep_blank_values=True)
        return nest([(k, v) for k, v in pairs if k != "token"])
    return json.loads(raw)


def events_of(mapping, name: str, region: str = "FR") -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    result = map_payload(mapping, payload_of(name), default_region=region)
    assert result.ignored is None
    return [e.to_json() for e in result.events]


def one(mapping, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    (event,) = events_of(mapping, name)
    return event


# --- the published samples (verbatim) -------------------------------------------------------

SAMPLE_EVENT = {
    "platform": "kazoo",
    "call_id": SAMPLE_A,
    "linked_call_ids": [SAMPLE_B],
    # An A leg (call_direction inbound) authorized by a device, dialling a 10+ digit number:
    # the user is calling out.
    "direction": "outbound",
    # +1 555 numbers are not valid per the metadata but of a possible length: kept in
    # E.164 (contacts holding these digits match), beside the raw text.
    "external_number": "+15552345678",
    "external_number_raw": "+15552345678",
    "company_number": "+15556783945",  # the caller id the account sends (possible, too)
    "agent": OWNER,
    # "63724349409" Gregorian seconds minus 62167219200 = 1557130209 (Unix)
    "occurred_at": "2019-05-06T08:10:09Z",
    "variables": {"custom_channel_vars": {}},
}


def test_sample_channel_create_is_a_ringing_outbound_call(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_create__sample.json") == [{**SAMPLE_EVENT, "stage": "ringing"}]


def test_sample_channel_answer_is_answered(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_answer__sample.json") == [
        {**SAMPLE_EVENT, "stage": "answered"}
    ]


def test_sample_channel_bridge_is_answered(kazoo) -> None:  # type: ignore[no-untyped-def]
    # original_number / other_leg_destination_number are bridge-only and not canonical fields.
    assert events_of(kazoo, "channel_bridge__sample.json") == [
        {**SAMPLE_EVENT, "stage": "answered"}
    ]


def test_sample_channel_destroy_ends_the_call_with_its_durations(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_destroy__sample.json") == [
        {
            **SAMPLE_EVENT,
            "stage": "ended",
            "duration_s": 6,
            "talk_s": 6,
            # NORMAL_CLEARING states no outcome: the fold infers it (talk time → answered).
            "hangup_cause": "NORMAL_CLEARING",
        }
    ]


# --- an inbound call, form-encoded ----------------------------------------------------------

CUSTOMER_LEG = {
    "platform": "kazoo",
    "call_id": IN_A,
    "direction": "inbound",
    "external_number": CUSTOMER,
    "external_number_raw": CUSTOMER,
    "company_number": DID,
    "variables": IN_VARIABLES,
}


def test_inbound_customer_leg_created_rings_an_inbound_call(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_create__inbound_customer_leg.form") == [
        {
            **CUSTOMER_LEG,
            "stage": "ringing",
            "linked_call_ids": [],
            "occurred_at": "2026-03-18T09:30:00Z",
        }
    ]


def test_get_hook_query_string_reads_like_the_form_body(kazoo) -> None:  # type: ignore[no-untyped-def]
    # The "?account_id" left by KAZOO's second "?" is neither read nor kept as a variable.
    assert events_of(kazoo, "channel_create__inbound_customer_leg.query") == events_of(
        kazoo, "channel_create__inbound_customer_leg.form"
    )


def test_inbound_agent_leg_created_names_its_call_and_agent(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_create__inbound_agent_leg.form") == [
        {
            "platform": "kazoo",
            "call_id": IN_B,
            "parent_call_id": IN_A,
            "stage": "ringing",
            "linked_call_ids": [],
            "agent": OWNER,
            "occurred_at": "2026-03-18T09:30:01Z",
            "variables": {},
        }
    ]


def test_inbound_agent_leg_answered(kazoo) -> None:  # type: ignore[no-untyped-def]
    event = one(kazoo, "channel_answer__inbound_agent_leg.form")
    assert (event["stage"], event["parent_call_id"], event["agent"]) == ("answered", IN_A, OWNER)
    assert event["occurred_at"] == "2026-03-18T09:30:09Z"
    assert "direction" not in event and "external_number" not in event


def test_inbound_customer_leg_answered_links_its_agent_leg(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_answer__inbound_customer_leg.form") == [
        {
            **CUSTOMER_LEG,
            "stage": "answered",
            "linked_call_ids": [IN_B],
            "occurred_at": "2026-03-18T09:30:09Z",
        }
    ]


def test_inbound_customer_leg_bridged_is_answered(kazoo) -> None:  # type: ignore[no-untyped-def]
    event = one(kazoo, "channel_bridge__inbound_customer_leg.form")
    assert event == {
        **CUSTOMER_LEG,
        "stage": "answered",
        "linked_call_ids": [IN_B],
        "occurred_at": "2026-03-18T09:30:09Z",
    }


def test_inbound_agent_leg_ended_names_no_agent(kazoo) -> None:  # type: ignore[no-untyped-def]
    # A device leg's end says nothing about who took the call (ring groups end the losers last).
    assert events_of(kazoo, "channel_destroy__inbound_agent_leg.form") == [
        {
            "platform": "kazoo",
            "call_id": IN_B,
            "parent_call_id": IN_A,
            "stage": "ended",
            "linked_call_ids": [],
            "occurred_at": "2026-03-18T09:31:44Z",
            "variables": {},
        }
    ]


def test_inbound_customer_leg_ended_carries_durations(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_destroy__inbound_customer_leg.form") == [
        {
            **CUSTOMER_LEG,
            "stage": "ended",
            "linked_call_ids": [IN_B],
            "occurred_at": "2026-03-18T09:31:44Z",
            "duration_s": 104,
            "talk_s": 95,
            "hangup_cause": "NORMAL_CLEARING",
        }
    ]


def test_missed_inbound_customer_leg_is_no_answer(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_destroy__inbound_missed_customer_leg.form") == [
        {
            **CUSTOMER_LEG,
            "stage": "ended",
            "linked_call_ids": [],
            "occurred_at": "2026-03-18T09:30:21Z",
            "duration_s": 21,
            "talk_s": 0,
            # The customer gave up before anyone answered: a missed call.
            "outcome": "no_answer",
            "hangup_cause": "ORIGINATOR_CANCEL",
        }
    ]


def test_missed_inbound_agent_leg_sets_no_outcome(kazoo) -> None:  # type: ignore[no-untyped-def]
    event = one(kazoo, "channel_destroy__inbound_missed_agent_leg.form")
    assert (event["stage"], event["parent_call_id"]) == ("ended", IN_A)
    assert "outcome" not in event and "agent" not in event


# --- an outbound call, JSON -----------------------------------------------------------------

USER_LEG = {
    "platform": "kazoo",
    "call_id": OUT_A,
    "direction": "outbound",
    # Dialled as "0645218791": read with the default region.
    "external_number": DIALLED,
    "external_number_raw": "0645218791",
    "agent": OWNER,
    "variables": OUT_VARIABLES,
}
CARRIER_LEG = {
    "platform": "kazoo",
    "call_id": OUT_B,
    "parent_call_id": OUT_A,
    "linked_call_ids": [],
    "direction": "outbound",
    "external_number": DIALLED,
    "external_number_raw": DIALLED,
    "company_number": DID,
    "variables": {},
}


def test_outbound_user_leg_created_is_an_outbound_call_by_its_owner(kazoo) -> None:  # type: ignore[no-untyped-def]
    # The device's caller ID is its extension ("1001"): not a company number.
    assert events_of(kazoo, "channel_create__outbound_user_leg.json") == [
        {
            **USER_LEG,
            "stage": "ringing",
            "linked_call_ids": [],
            "occurred_at": "2026-03-18T10:15:00Z",
        }
    ]


def test_outbound_carrier_leg_created_folds_into_the_user_leg(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_create__outbound_carrier_leg.json") == [
        {**CARRIER_LEG, "stage": "ringing", "occurred_at": "2026-03-18T10:15:01Z"}
    ]


def test_outbound_carrier_leg_answered(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_answer__outbound_carrier_leg.json") == [
        {**CARRIER_LEG, "stage": "answered", "occurred_at": "2026-03-18T10:15:12Z"}
    ]


def test_outbound_user_leg_answered(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_answer__outbound_user_leg.json") == [
        {
            **USER_LEG,
            "stage": "answered",
            "linked_call_ids": [OUT_B],
            "occurred_at": "2026-03-18T10:15:12Z",
        }
    ]


def test_outbound_carrier_leg_ended(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_destroy__outbound_carrier_leg.json") == [
        {**CARRIER_LEG, "stage": "ended", "occurred_at": "2026-03-18T10:15:54Z"}
    ]


def test_outbound_user_leg_ended_carries_talk_time(kazoo) -> None:  # type: ignore[no-untyped-def]
    assert events_of(kazoo, "channel_destroy__outbound_user_leg.json") == [
        {
            **USER_LEG,
            "stage": "ended",
            "linked_call_ids": [OUT_B],
            "occurred_at": "2026-03-18T10:15:54Z",
            "duration_s": 54,
            "talk_s": 42,
            "hangup_cause": "NORMAL_CLEARING",
        }
    ]


def test_outbound_busy_user_leg_is_busy(kazoo) -> None:  # type: ignore[no-untyped-def]
    event = one(kazoo, "channel_destroy__outbound_busy_user_leg.json")
    assert (event["stage"], event["outcome"], event["hangup_cause"]) == (
        "ended",
        "busy",
        "USER_BUSY",
    )
    assert (event["duration_s"], event["talk_s"]) == (6, 0)
    assert event["direction"] == "outbound" and event["external_number"] == DIALLED


# --- known payloads that log nothing --------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "channel_create__loopback_inbound_leg.form",
        "object__doc_edited.json",
        "notifications__missed_call.json",
        "parking__park_parked.json",
        "sms__inbound.json",
    ],
)
def test_known_payloads_are_ignored(kazoo, name: str) -> None:  # type: ignore[no-untyped-def]
    result = map_payload(kazoo, payload_of(name), default_region="FR")
    assert result.events == [] and result.ignored


def test_a_placed_leg_naming_no_other_leg_is_ignored(kazoo) -> None:  # type: ignore[no-untyped-def]
    payload = payload_of("channel_create__outbound_carrier_leg.json")
    del payload["other_leg_call_id"], payload["custom_channel_vars"]["Bridge-ID"]
    result = map_payload(kazoo, payload, default_region="FR")
    assert result.events == [] and result.ignored


# --- direction and outcome heuristics -------------------------------------------------------


def carrier_leg(**changes: Any) -> dict[str, Any]:
    payload = payload_of("channel_destroy__inbound_missed_customer_leg.form")
    payload.update(changes)
    return payload


@pytest.mark.parametrize(
    "changes",
    [
        # cdrs.md: authorizing_type resource = "from a known offnet carrier".
        {"authorizing_type": "resource", "custom_channel_vars": {}},
        # No CCVs at all (reserved_ccv_keys unset) and no authorizing type: from outside.
        {"custom_channel_vars": None},
    ],
)
def test_other_carrier_leg_marks_also_read_as_inbound(kazoo, changes: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    payload = {k: v for k, v in carrier_leg(**changes).items() if v is not None}
    (event,) = map_payload(kazoo, payload, default_region="FR").events
    assert (event.direction, event.external_number, event.company_number) == (
        "inbound",
        CUSTOMER,
        DID,
    )


def test_a_device_dialling_an_extension_is_internal(kazoo) -> None:  # type: ignore[no-untyped-def]
    payload = payload_of("channel_create__outbound_user_leg.json")
    payload.update(request="1002@acme.sip.example.net", to="1002@acme.sip.example.net")
    (event,) = map_payload(kazoo, payload, default_region="FR").events
    assert event.direction == "internal" and event.external_number is None


def test_a_user_hanging_up_before_the_answer_cancelled_the_call(kazoo) -> None:  # type: ignore[no-untyped-def]
    payload = payload_of("channel_destroy__outbound_busy_user_leg.json")
    payload["hangup_cause"] = "ORIGINATOR_CANCEL"
    (event,) = map_payload(kazoo, payload, default_region="FR").events
    assert event.outcome == "canceled"


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        ("NO_ANSWER", "no_answer"),
        ("USER_BUSY", "busy"),
        ("CALL_REJECTED", "busy"),
        ("UNALLOCATED_NUMBER", "failed"),
        # Not in the table: the outcome is left to the fold, and the event is still read.
        ("NORMAL_CLEARING", None),
        ("SOMETHING_NEW", None),
    ],
)
def test_hangup_causes_map_to_outcomes(kazoo, cause: str, outcome: str | None) -> None:  # type: ignore[no-untyped-def]
    (event,) = map_payload(kazoo, carrier_leg(hangup_cause=cause), default_region="FR").events
    assert event.outcome == outcome and event.hangup_cause == cause


def test_timestamp_as_integer_or_text_is_the_same_instant(kazoo) -> None:  # type: ignore[no-untyped-def]
    as_text = carrier_leg(timestamp="63941045421")
    as_int = carrier_leg(timestamp=63941045421)
    (a,) = map_payload(kazoo, as_text, default_region="FR").events
    (b,) = map_payload(kazoo, as_int, default_region="FR").events
    assert (
        a.occurred_at == b.occurred_at and a.occurred_at.isoformat() == "2026-03-18T09:30:21+00:00"
    )


# --- legs fold into one call ----------------------------------------------------------------


def fold(mapping, names: list[str], root: str) -> Call:  # type: ignore[no-untyped-def]
    """Fold the fixtures' events in this order, as the worker does, into the call `root`."""
    call = Call(platform="kazoo", platform_call_id=root)
    for name in names:
        for event in map_payload(mapping, payload_of(name), default_region="FR").events:
            apply_event(call, CallEvent.from_json(event.to_json()))
    return call


def test_inbound_legs_fold_into_one_answered_call_by_the_agent(kazoo) -> None:  # type: ignore[no-untyped-def]
    call = fold(
        kazoo,
        [
            "channel_destroy__inbound_agent_leg.form",
            "channel_create__inbound_customer_leg.form",
            "channel_create__inbound_agent_leg.form",
            "channel_destroy__inbound_customer_leg.form",
            "channel_answer__inbound_agent_leg.form",
            "channel_bridge__inbound_customer_leg.form",
        ],
        root=IN_A,
    )
    assert call.ended and call.outcome == "answered"
    assert (call.direction, call.external_number, call.company_number) == ("inbound", CUSTOMER, DID)
    assert (call.agent, call.talk_s, call.duration_s) == (OWNER, 95, 104)


def test_outbound_legs_take_the_company_number_from_the_carrier_leg(kazoo) -> None:  # type: ignore[no-untyped-def]
    call = fold(
        kazoo,
        [
            "channel_destroy__outbound_user_leg.json",
            "channel_answer__outbound_carrier_leg.json",
            "channel_create__outbound_user_leg.json",
            "channel_destroy__outbound_carrier_leg.json",
        ],
        root=OUT_A,
    )
    assert call.ended and call.outcome == "answered"
    assert (call.direction, call.external_number, call.company_number) == (
        "outbound",
        DIALLED,
        DID,
    )
    assert (call.agent, call.talk_s) == (OWNER, 42)


# --- what cannot be read says why -----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # An event type this file does not know (not a KAZOO hook_event today).
        ({"hook_event": "channel_hold"}, "no event rule matches this payload"),
        ({"call_direction": None}, "no event rule matches this payload"),
        ({"call_id": None}, "call_id: call_id is missing"),
        ({"timestamp": "yesterday"}, "occurred_at: expected a number, got 'yesterday'"),
    ],
)
def test_unreadable_channel_events_say_why(kazoo, change: dict[str, Any], reason: str) -> None:  # type: ignore[no-untyped-def]
    payload = {
        k: v
        for k, v in {**payload_of("channel_create__sample.json"), **change}.items()
        if v is not None
    }
    with pytest.raises(MappingError) as info:
        map_payload(kazoo, payload, default_region="FR")
    assert reason in str(info.value)


def test_a_payload_of_no_known_kind_is_refused(kazoo) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MappingError, match="no event rule matches this payload"):
        map_payload(kazoo, {"hello": "world"}, default_region="FR")


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        ("USER_BUSY", "busy"),
        ("user_busy", "busy"),  # the map compares without case
        ("NORMAL_CLEARING", None),  # not an outcome: the fold infers it
        ("CAUSE_KAZOO_ADDS_NEXT_YEAR", None),  # unknown: absent, never an unmapped delivery
    ],
)
def test_hangup_causes_the_map_does_not_list_leave_the_outcome_absent(  # type: ignore[no-untyped-def]
    kazoo, cause: str, outcome: str | None
) -> None:
    payload = payload_of("channel_destroy__outbound_user_leg.json")
    payload["hangup_cause"] = cause
    (event,) = map_payload(kazoo, payload, default_region="FR").events
    assert (event.outcome, event.hangup_cause) == (outcome, cause)
