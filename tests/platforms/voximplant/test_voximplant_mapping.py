"""Voximplant Kit: each fixture → the canonical events `mappings/voximplant.yaml` makes of it.

Kit publishes no verbatim callback body: the fixtures are built from the documented field
names (fixtures/SOURCES.md). The completion-code tests pin callhook's reading of every code
Kit's API documentation (https://kit-apidoc.voximplant.com/) lists for each call type.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tests.conftest import ROOT, load_fixture
from webhook_receiver.mapping import MappingError, load_mappings, map_payload

COMPANY = "+33184880000"  # the Kit number the customers call and are called from
RECORDING = "https://kit-records.example.com/2024/05/14/{}.mp3"


@pytest.fixture(scope="module")
def voximplant():  # type: ignore[no-untyped-def]
    return load_mappings(ROOT / "mappings").platforms["voximplant"]


def body(name: str) -> dict[str, Any]:
    return json.loads(load_fixture("voximplant", name))


def events_of(mapping, payload: dict[str, Any], region: str = "FR") -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    result = map_payload(mapping, payload, default_region=region)
    assert result.ignored is None
    return [e.to_json() for e in result.events]


# -- call A: inbound, answered from the Sales queue by Kit user 1723 ---------------------


def test_call_assigned_to_agent_is_the_answer_and_names_the_agent(voximplant) -> None:  # type: ignore[no-untyped-def]
    # The `call` object carries session_id as a number (as Kit functions' CALL object does).
    assert events_of(voximplant, body("call_assigned_to_agent__queue_call.json")) == [
        {
            "platform": "voximplant",
            "call_id": "1126400",
            "stage": "answered",
            "linked_call_ids": [],
            "agent": "1723",
            "variables": {"UTC": "Europe/Paris", "ivr_choice": "sales"},
        }
    ]


def test_finished_call_ends_the_call_and_states_no_outcome_without_a_code(voximplant) -> None:  # type: ignore[no-untyped-def]
    assert events_of(voximplant, body("finished_call__inbound_answered.json")) == [
        {
            "platform": "voximplant",
            "call_id": "1126400",
            "stage": "ended",
            "linked_call_ids": [],
            "direction": "inbound",
            # Inbound: phone_a is the customer, phone_b the Kit number they dialled.
            "external_number": "+33678120001",
            "external_number_raw": "33678120001",
            "company_number": COMPANY,
            "started_at": "2024-05-14T10:02:00Z",
            "ended_at": "2024-05-14T10:05:41Z",
            "duration_s": 221,
            "recording_url": RECORDING.format(1126400),
            "variables": {"UTC": "Europe/Paris", "ivr_choice": "sales"},
        }
    ]


def test_new_calls_inbound_answered_is_the_final_record_with_agent_and_code(voximplant) -> None:  # type: ignore[no-untyped-def]
    assert events_of(voximplant, body("new_calls__inbound_answered.json")) == [
        {
            "platform": "voximplant",
            "call_id": "1126400",
            "stage": "cdr",
            "linked_call_ids": [],
            "direction": "inbound",
            "external_number": "+33678120001",
            "external_number_raw": "33678120001",
            "company_number": COMPANY,
            "agent": "1723",
            "started_at": "2024-05-14T10:02:00Z",
            "duration_s": 221,
            "outcome": "answered",
            "recording_url": RECORDING.format(1126400),
            "hangup_cause": "Call_Answered",
            # call_data arrives as JSON text.
            "variables": {"UTC": "Europe/Paris", "ivr_choice": "sales"},
        }
    ]


def test_call_finalized_inbound_answered_is_the_final_record(voximplant) -> None:  # type: ignore[no-untyped-def]
    assert events_of(voximplant, body("call_finalized__inbound_answered.json")) == [
        {
            "platform": "voximplant",
            "call_id": "1126400",
            "stage": "cdr",
            "linked_call_ids": [],
            "direction": "inbound",
            "external_number": "+33678120001",
            "external_number_raw": "33678120001",
            "company_number": COMPANY,
            "started_at": "2024-05-14T10:02:00Z",
            "ended_at": "2024-05-14T10:05:41Z",
            "duration_s": 221,
            "outcome": "answered",
            "recording_url": RECORDING.format(1126400),
            "hangup_cause": "Call_Answered",
            "variables": {},
        }
    ]


# -- call B: outbound from Kit user 1723's softphone, answered ----------------------------


@pytest.mark.parametrize(
    ("name", "stage", "outcome", "agent"),
    [
        ("new_calls__outbound_answered.json", "cdr", "answered", "1723"),
        ("finished_call__outbound_answered.json", "ended", None, None),
        ("call_finalized__outbound_answered.json", "cdr", "answered", None),
    ],
)
def test_outbound_answered_call_events(voximplant, name, stage, outcome, agent) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(voximplant, body(name))
    assert event["call_id"] == "1126510"
    assert event["stage"] == stage
    assert event["direction"] == "outbound"
    # Outbound: phone_a is the caller ID shown (the Kit number), phone_b the customer.
    assert event["external_number"] == "+33678120002"
    assert event["company_number"] == COMPANY
    assert event["started_at"] == "2024-05-14T11:15:09Z"
    assert event.get("ended_at") in (None, "2024-05-14T11:19:14Z")
    assert event["duration_s"] == 233
    assert event.get("outcome") == outcome
    assert event.get("agent") == agent
    assert event["recording_url"] == RECORDING.format(1126510)


# -- call C: inbound, offered to an agent who did not pick up ------------------------------


@pytest.mark.parametrize(
    ("name", "stage", "outcome"),
    [
        ("new_calls__inbound_missed.json", "cdr", "no_answer"),
        ("finished_call__inbound_missed.json", "ended", None),
        ("call_finalized__inbound_missed.json", "cdr", "no_answer"),
    ],
)
def test_inbound_missed_call_events(voximplant, name, stage, outcome) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(voximplant, body(name))
    assert event["call_id"] == "1126602"
    assert event["stage"] == stage
    assert event["direction"] == "inbound"
    assert event["external_number"] == "+33678120003"
    assert event["company_number"] == COMPANY
    # The caller waited 27 s; the code, not the duration, says nobody answered.
    assert event["duration_s"] == 27
    assert event.get("outcome") == outcome
    assert event.get("hangup_cause") == (None if outcome is None else "Lost_By_Agent")
    # Not recorded: Kit sends an empty record_url, read as absent; no agent took the call.
    assert "recording_url" not in event and "agent" not in event


def test_one_new_calls_callback_listing_calls_of_both_directions(voximplant) -> None:  # type: ignore[no-untyped-def]
    # The direction is read per call, not once per callback.
    busy, abandoned = events_of(voximplant, body("new_calls__mixed_batch.json"), region="US")
    assert busy == {
        "platform": "voximplant",
        "call_id": "1126281",
        "stage": "cdr",
        "linked_call_ids": [],
        "direction": "outbound",
        # German numbers without "+": international whatever the default region.
        "external_number": "+4915112345678",
        "external_number_raw": "4915112345678",
        "company_number": "+4930123456",
        "started_at": "2024-05-14T09:31:07Z",
        "duration_s": 0,
        "outcome": "busy",
        "hangup_cause": "Call_Busy",
        "variables": {"phone": "4915112345678", "UTC": "Europe/Berlin", "callhook_ref": "ch_01HXZ"},
    }
    assert (abandoned["call_id"], abandoned["direction"]) == ("1126290", "inbound")
    assert (abandoned["external_number"], abandoned["company_number"]) == ("+33678120004", COMPANY)
    assert (abandoned["outcome"], abandoned["hangup_cause"]) == ("no_answer", "Abandoned")


# -- known but ignored ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "scenario_updated__published.json",
        "wrap_up_code_set__callback_later.json",
        "chat_closed__by_agent.json",
    ],
)
def test_known_events_that_concern_no_call_are_ignored(voximplant, name: str) -> None:  # type: ignore[no-untyped-def]
    result = map_payload(voximplant, body(name), default_region="FR")
    assert result.events == []
    assert result.ignored and "ignore rule" in result.ignored


@pytest.mark.parametrize(
    "event_type",
    [
        "scenario_created",
        "scenario_updated",
        "scenario_deleted",
        "caller_id_changed",
        "numbers_changed",
        "profile_email_updated",
        "chat_started",
        "chat_assigned_to_agent",
        "chat_closed",
        "chat_unassigned",
        "chat_transfer",
        "wrap_up_code_set",
    ],
)
def test_every_documented_non_call_event_type_is_ignored(voximplant, event_type: str) -> None:  # type: ignore[no-untyped-def]
    payload = {"callbacks": [{"hash": "0" * 32, "type": event_type, event_type: {}}]}
    assert map_payload(voximplant, payload, default_region="FR").ignored


def test_an_ignored_callback_batched_with_a_call_event_keeps_the_call(voximplant) -> None:  # type: ignore[no-untyped-def]
    payload = body("scenario_updated__published.json")
    payload["callbacks"] += body("new_calls__inbound_answered.json")["callbacks"]
    (event,) = events_of(voximplant, payload)
    assert event["call_id"] == "1126400"


# -- completion codes → outcome, per call type (Kit docs: "Completion codes by call type") --

# callhook's reading of each code the Kit docs list for inbound calls ...
INBOUND = {
    "Call_Answered": "answered",
    "Abandoned": "no_answer",
    "Lost_By_Agent": "no_answer",
    "Missed_By_Scenario": "no_answer",
    "System_Error": "failed",
}
# ... and for outbound ones (call scenario, automated and PDS campaigns, softphone,
# automatic callbacks: Kit's `is_incoming` is false for all of them).
OUTBOUND = {
    "Call_Answered": "answered",
    "Call_Busy": "busy",
    "No_Answer": "no_answer",
    "Temporary_Unavailable": "no_answer",
    "Call_Was_Rejected": "busy",
    "Request_Terminated": "canceled",
    "AMD": "voicemail",
    "Invalid_Number": "failed",
    "Insufficient_Funds": "failed",
    "Call_Prohibited": "failed",
    "Other_Error": "failed",
    "System_Error": "failed",
    "Restricted_By_DNC": "canceled",
    "Abandoned": "failed",
    "Lost_By_Agent": "failed",
    "No_Agents": "failed",
}
SEED_CASES = [(True, code, outcome) for code, outcome in INBOUND.items()] + [
    (False, code, outcome) for code, outcome in OUTBOUND.items()
]


def with_code(is_incoming: bool, code: str) -> dict[str, Any]:
    payload = body("new_calls__inbound_answered.json")
    call = payload["callbacks"][0]["new_calls"]["calls"][0]
    call.update(is_incoming=is_incoming, completion_code=code)
    return payload


@pytest.mark.parametrize(
    ("is_incoming", "code", "outcome"),
    SEED_CASES,
    ids=[f"{'inbound' if i else 'outbound'}-{c}" for i, c, _ in SEED_CASES],
)
def test_completion_code_outcome(voximplant, is_incoming: bool, code: str, outcome: str) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(voximplant, with_code(is_incoming, code))
    assert event["outcome"] == outcome
    assert event["hangup_cause"] == code  # Kit's own word is kept beside the outcome


@pytest.mark.parametrize(
    ("is_incoming", "code"),
    [
        (True, "Call_Busy"),  # a code the Kit docs do not list for inbound calls
        (False, "Missed_By_Scenario"),  # an inbound-only code on an outbound call
        (True, "Quantum_Entangled"),  # a code Kit may add one day
        (False, "call_answered_v2"),
    ],
)
def test_codes_a_call_type_does_not_list_are_failed_not_refused(  # type: ignore[no-untyped-def]
    voximplant, is_incoming: bool, code: str
) -> None:
    (event,) = events_of(voximplant, with_code(is_incoming, code))
    assert (event["outcome"], event["hangup_cause"]) == ("failed", code)


def test_codes_compare_case_insensitively(voximplant) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(voximplant, with_code(False, "CALL_BUSY"))
    assert event["outcome"] == "busy"


def test_single_object_events_read_the_same_code_table(voximplant) -> None:  # type: ignore[no-untyped-def]
    finalized = body("call_finalized__outbound_answered.json")
    finalized["callbacks"][0]["call_finalized"]["completion_code"] = "AMD"
    finished = body("finished_call__outbound_answered.json")
    finished["callbacks"][0]["finished_call"]["completion_code"] = "Call_Was_Rejected"
    assert events_of(voximplant, finalized)[0]["outcome"] == "voicemail"
    assert events_of(voximplant, finished)[0]["outcome"] == "busy"


def test_every_code_of_every_call_type_in_the_seed_is_covered() -> None:
    # The table of Kit's API documentation (https://kit-apidoc.voximplant.com/), copied
    # verbatim into the fixtures so the test runs offline.
    text = load_fixture("voximplant", "completion_codes.md").decode()
    text = text.split("## Completion codes by call type", 1)[1]
    sections = re.split(r"^\*\*(.+?):\*\*$", text, flags=re.MULTILINE)[1:]
    assert len(sections) == 10  # five call types: title, table
    for title, table in zip(sections[::2], sections[1::2], strict=True):
        codes = set(re.findall(r"^\| \*\*(\w+)\*\* \|", table, flags=re.MULTILINE))
        ours = INBOUND if title.startswith("Inbound") else OUTBOUND
        assert codes and codes <= set(ours), f"{title}: {sorted(codes - set(ours))}"


# -- other shapes -----------------------------------------------------------------------------


def test_new_calls_as_a_bare_list_is_read_the_same(voximplant) -> None:  # type: ignore[no-untyped-def]
    # This shape was guessed first; public consumer code reads {"calls": [...]}.
    payload = body("new_calls__inbound_answered.json")
    item = payload["callbacks"][0]
    expected = events_of(voximplant, payload)
    item["new_calls"] = item["new_calls"]["calls"]
    assert events_of(voximplant, payload) == expected


def test_a_transfer_to_another_agent_is_a_transfer(voximplant) -> None:  # type: ignore[no-untyped-def]
    payload = body("call_assigned_to_agent__queue_call.json")
    data = payload["callbacks"][0]["call_assigned_to_agent"]
    data.update(assign_type="transfer", agent={"id": 1988})
    (event,) = events_of(voximplant, payload)
    assert (event["stage"], event["agent"]) == ("transferred", "1988")


def test_anonymous_caller_has_no_number_but_the_call_is_kept(voximplant) -> None:  # type: ignore[no-untyped-def]
    payload = body("new_calls__inbound_missed.json")
    payload["callbacks"][0]["new_calls"]["calls"][0]["phone_a"] = "anonymous"
    (event,) = events_of(voximplant, payload)
    assert "external_number" not in event and event["external_number_raw"] == "anonymous"
    assert event["company_number"] == COMPANY


# -- unreadable payloads ----------------------------------------------------------------------


def call_without(name: str, key: str) -> dict[str, Any]:
    payload = body(name)
    del payload["callbacks"][0]["new_calls"]["calls"][0][key]
    return payload


def replaced(name: str, key: str, value: Any) -> dict[str, Any]:
    payload = body(name)
    payload["callbacks"][0]["new_calls"]["calls"][0][key] = value
    return payload


def mixed_with_one_broken() -> dict[str, Any]:
    payload = body("new_calls__mixed_batch.json")
    broken = copy.deepcopy(payload["callbacks"][0])
    del broken["new_calls"]["calls"][1]["session_id"]
    payload["callbacks"].append(broken)
    return payload


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {"callbacks": [{"hash": "0" * 32, "type": "call_exploded", "call_exploded": {}}]},
            "callbacks[0]: no event rule matches this payload",
        ),
        ({"callbacks": []}, "split: 'callbacks' is not a non-empty list"),
        ({"session_id": "1126400"}, "split: 'callbacks' is not a non-empty list"),
        ({"callbacks": ["new_calls"]}, "callbacks[0]: not an object"),
        (
            call_without("new_calls__inbound_answered.json", "session_id"),
            "callbacks[0]: new_calls: call_id: session_id is missing",
        ),
        (
            replaced("new_calls__inbound_answered.json", "call_data", "{broken"),
            "new_calls: variables: call_data: not JSON text",
        ),
        (
            replaced("new_calls__inbound_answered.json", "datetime_start", "14/05/2024 10:02"),
            "started_at: '14/05/2024 10:02' does not match the time format '%Y-%m-%d %H:%M:%S'",
        ),
        (
            replaced("new_calls__inbound_answered.json", "duration", "long"),
            "duration_s: expected a number, got 'long'",
        ),
        (
            {"callbacks": [{"type": "new_calls", "new_calls": {"calls": []}}]},
            "new_calls: foreach 'calls' is not a non-empty list",
        ),
        (
            {"callbacks": [{"type": "finished_call", "finished_call": "1126400"}]},
            "root 'finished_call' is not an object",
        ),
        (
            {"callbacks": [{"type": "call_assigned_to_agent", "call_assigned_to_agent": {}}]},
            "call_assigned_to_agent: call_id: call.session_id is missing",
        ),
        # One unreadable call refuses the whole delivery, kept for replay.
        (mixed_with_one_broken(), "callbacks[1]: new_calls: call_id: session_id is missing"),
    ],
)
def test_unreadable_payloads_say_why(voximplant, payload, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MappingError) as info:
        map_payload(voximplant, payload, default_region="FR")
    assert reason in str(info.value)


def test_the_customer_is_picked_per_call_and_never_guessed(voximplant) -> None:  # type: ignore[no-untyped-def]
    payload = with_code(True, "Call_Answered")
    call = payload["callbacks"][0]["new_calls"]["calls"][0]
    call.pop("phone_b")  # an inbound call needs only the caller to name the customer
    (event,) = events_of(voximplant, payload)
    assert (event["external_number"], event.get("company_number")) == (
        "+" + str(call["phone_a"]).lstrip("+"),
        None,
    )
    call.pop("is_incoming")  # no direction: neither number is taken for the customer
    (event,) = events_of(voximplant, payload)
    assert "external_number" not in event and "direction" not in event
