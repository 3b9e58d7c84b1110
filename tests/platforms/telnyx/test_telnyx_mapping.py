"""Telnyx: each published payload → the canonical events `mappings/telnyx.yaml` makes of it.

What a user checks on a call: its id (the call session), direction, the customer's and the
company's numbers, times (hence the duration), outcome and recording. The fixtures and
where each comes from: fixtures/SOURCES.md.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, Environment, load_fixture
from webhook_receiver.cli.main import cli
from webhook_receiver.mapping import MappingError, load_mappings, map_payload

FIXTURES = ROOT / "tests" / "platforms" / "telnyx" / "fixtures"
# The call session of the documented call.initiated example, and of the documented
# call.hangup / call.recording.saved examples (another call).
INBOUND_SESSION = "428c31b6-abf3-3bc1-b7f4-5013ef9657c1"
DOC_SESSION = "428c31b6-7af4-4bcb-b7f5-5013ef9657c1"


@pytest.fixture(scope="module")
def telnyx():  # type: ignore[no-untyped-def]
    return load_mappings(ROOT / "mappings").platforms["telnyx"]


def events_of(mapping, name: str, region: str = "FR") -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    result = map_payload(mapping, json.loads(load_fixture("telnyx", name)), default_region=region)
    return [e.to_json() for e in result.events]


def test_documented_incoming_call_names_the_caller_and_the_company_number(telnyx) -> None:  # type: ignore[no-untyped-def]
    # DEFAULT_REGION plays no part: Telnyx numbers carry their "+" (even with dashes).
    assert events_of(telnyx, "call.initiated__doc_incoming.json", region="FR") == [
        {
            "platform": "telnyx",
            "call_id": INBOUND_SESSION,
            "stage": "ringing",
            "linked_call_ids": [],
            "direction": "inbound",
            "external_number": "+12025550133",
            "external_number_raw": "+1-202-555-0133",
            "company_number": "+12025550131",
            "occurred_at": "2018-02-02T22:25:27.521992Z",
            "started_at": "2018-02-02T22:25:27.521992Z",
            "variables": {},
        }
    ]


def test_outgoing_call_names_the_callee_as_the_customer(telnyx) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(telnyx, "call.initiated__outgoing.json")
    assert event["stage"] == "ringing"
    assert event["direction"] == "outbound"
    assert event["external_number"] == "+35319605860"
    assert event["company_number"] == "+12025550131"


def test_answer_and_hangup_of_one_call_give_its_talk_time(telnyx) -> None:  # type: ignore[no-untyped-def]
    (answered,) = events_of(telnyx, "call.answered__incoming.json")
    (ended,) = events_of(telnyx, "call.hangup__incoming_normal_clearing.json")
    # One call: the legs' events carry the session of the call.initiated example.
    assert answered["call_id"] == ended["call_id"] == INBOUND_SESSION
    assert answered["stage"] == "answered"
    assert answered["answered_at"] == "2018-02-02T22:25:31.104512Z"
    assert ended["stage"] == "ended"
    assert ended["started_at"] == "2018-02-02T22:25:27.521992Z"
    assert ended["ended_at"] == "2018-02-02T22:27:02.339101Z"
    assert ended["hangup_cause"] == "normal_clearing"
    # normal_clearing says only that someone hung up: the outcome is inferred from the
    # answer, and neither event claims a direction or numbers (call.initiated has them).
    for event in (answered, ended):
        assert "outcome" not in event and "direction" not in event
        assert "external_number" not in event and "duration_s" not in event


def test_documented_rejected_hangup_is_busy(telnyx) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(telnyx, "call.hangup__doc_call_rejected.json")
    assert event["call_id"] == DOC_SESSION
    assert (event["stage"], event["outcome"], event["hangup_cause"]) == (
        "ended",
        "busy",
        "call_rejected",
    )
    assert event["started_at"] == "2018-02-02T22:20:27.521992Z"
    assert event["ended_at"] == "2018-02-02T22:25:27.521992Z"


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        ("user_busy", "busy"),
        ("no_answer", "no_answer"),
        ("timeout", "no_answer"),
        ("not_found", "failed"),
        ("originator_cancel", None),  # inferred: no answer seen → no answer
        ("normal_clearing", None),
        ("a_cause_telnyx_adds_later", None),  # never refuses the call
    ],
)
def test_hangup_causes_map_to_outcomes(telnyx, cause: str, outcome: str | None) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(load_fixture("telnyx", "call.hangup__doc_call_rejected.json"))
    payload["data"]["payload"]["hangup_cause"] = cause
    (event,) = map_payload(telnyx, payload, default_region="FR").events
    assert event.to_json().get("outcome") == outcome


def test_documented_recording_updates_the_call_without_ending_it(telnyx) -> None:  # type: ignore[no-untyped-def]
    (event,) = events_of(telnyx, "call.recording.saved__doc_example.json")
    assert event["call_id"] == DOC_SESSION
    assert event["stage"] == "answered"
    assert event["recording_url"] == "http://example.com/recording.mp3"
    assert "ended_at" not in event


def test_other_call_control_events_are_known_and_ignored(telnyx) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(load_fixture("telnyx", "call.speak.ended__ignored.json"))
    result = map_payload(telnyx, payload, default_region="FR")
    assert result.events == [] and result.ignored


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {
                "data": {
                    "event_type": "call.initiated",
                    "payload": {
                        "call_session_id": "s",
                        "direction": "sideways",
                        "from": "+12025550133",
                    },
                }
            },
            "direction: direction 'sideways' is not one of: incoming, outgoing",
        ),
        (
            {
                "data": {
                    "event_type": "call.hangup",
                    "occurred_at": "2018-02-02T22:25:27Z",
                    "payload": {"call_leg_id": "only-a-leg"},
                }
            },
            "call_id: call_session_id is missing",
        ),
        ({"data": {"event_type": "call.answered", "payload": "no"}}, "is not an object"),
        ({"data": {"event_type": "call.brand.new"}}, "no event rule matches this payload"),
    ],
)
def test_unreadable_payloads_say_why(telnyx, payload: dict[str, Any], reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MappingError) as info:
        map_payload(telnyx, payload, default_region="FR")
    assert reason in str(info.value)


def test_callhook_mappings_try_prints_the_hubspot_call(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Step 3 of docs/adding-a-platform.md, as the user runs it."""
    env = Environment()
    env.set({"MAPPINGS_DIR": str(ROOT / "mappings"), "INSTANCE_DIR": str(tmp_path / "instance")})
    try:
        fixture = FIXTURES / "call.hangup__doc_call_rejected.json"
        result = CliRunner().invoke(cli, ["mappings", "try", "telnyx", str(fixture)])
    finally:
        env.restore()
    assert result.exit_code == 0, result.output
    printed = result.output.split("canonical events:\n", 1)[1]
    events = json.loads(printed.split("\nHubSpot requests once the call has ended", 1)[0])
    assert [e["outcome"] for e in events] == ["busy"]
    assert '"hs_call_status": "BUSY"' in result.output
    assert f'"hs_call_external_id": "callhook:telnyx:{DOC_SESSION}"' in result.output
