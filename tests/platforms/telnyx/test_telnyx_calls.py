"""Telnyx end to end: webhooks over HTTP → real worker → the fake HubSpot.

Each call's webhooks are built from the fixtures (fresh ids, session, numbers and times)
and posted shuffled, some twice, as Telnyx delivers them ("out-of-order webhooks …
duplicate webhooks"); each test then checks what a sales team sees in HubSpot: one call,
on the right contact, with direction, numbers, duration, status and recording.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import ROOT, WEBHOOK_SECRETS, load_fixture, wait_until
from tests.unmapped import assert_kept_unmapped
from webhook_receiver.mapping import load_mappings

SECRET = WEBHOOK_SECRETS["telnyx"]
URL = "/webhooks/telnyx"
COMPANY = "+12025550131"  # the Telnyx number of the documented examples
START = datetime(2026, 3, 18, 10, 0, tzinfo=UTC)


def post(client, body: dict[str, Any], token: str | None = SECRET):  # type: ignore[no-untyped-def]
    query = {} if token is None else {"token": token}
    return client.post(URL, json=body, query_string=query)


def webhook(fixture: str, session: str, at: datetime, **payload: Any) -> dict[str, Any]:
    """The fixture's webhook moved onto call session `session`, at `at`, with `payload` set."""
    body = json.loads(load_fixture("telnyx", fixture))
    body["data"]["id"] = str(uuid.uuid4())
    body["data"]["occurred_at"] = at.isoformat().replace("+00:00", "Z")
    body["data"]["payload"]["call_session_id"] = session
    body["data"]["payload"].update(payload)
    return body


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def deliver_shuffled(client, bodies: list[dict[str, Any]], twice: list[int], seed: str) -> None:  # type: ignore[no-untyped-def]
    sends = bodies + [bodies[i] for i in twice]
    random.Random(seed).shuffle(sends)
    statuses = []
    for body in sends:
        response = post(client, body)
        assert response.status_code == 200, response.json
        statuses.append(response.json["status"])
    assert statuses.count("duplicate") == len(twice), statuses


def calls_for(hubspot, number: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        c
        for c in hubspot.calls()
        if number
        in (c["properties"].get("hs_call_to_number"), c["properties"].get("hs_call_from_number"))
    ]


def settled(hubspot, number: str, **expected: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The number's one HubSpot call once it shows `expected` (later webhooks update it)."""

    def check() -> dict[str, Any] | None:
        found = calls_for(hubspot, number)
        if len(found) == 1 and all(found[0]["properties"].get(k) == v for k, v in expected.items()):
            return found[0]
        return None

    return wait_until(check, timeout=45)


def statuses() -> dict[str, str]:
    """What mappings/hubspot.yaml sends as hs_call_status for each outcome."""
    call = load_mappings(ROOT / "mappings").hubspot.call  # type: ignore[union-attr]
    return {str(k): v for k, v in call.status.items()}


def test_inbound_answered_recorded_call_is_logged_once_on_the_caller(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    caller = "+12025550144"
    contact_id = hubspot.add_contact(firstname="Dana", lastname="Reyes", phone="(202) 555-0144")
    session = str(uuid.uuid4())
    answered, ended = START + timedelta(seconds=6), START + timedelta(seconds=96)
    recording = f"https://recordings.example.com/{session}.mp3"
    bodies = [
        webhook(
            "call.initiated__doc_incoming.json",
            session,
            START,
            to=COMPANY,
            **{"from": "+1-202-555-0144"},
        ),
        webhook("call.answered__incoming.json", session, answered, start_time=iso(START)),
        webhook(
            "call.hangup__incoming_normal_clearing.json", session, ended, start_time=iso(START)
        ),
        webhook(
            "call.recording.saved__doc_example.json",
            session,
            ended + timedelta(seconds=20),
            public_recording_urls={"mp3": recording},
            recording_urls={"mp3": recording},
        ),
    ]
    deliver_shuffled(client, bodies, twice=[0, 2], seed="telnyx-inbound")

    call = settled(hubspot, caller, hs_call_recording_url=recording)
    props = call["properties"]
    assert props["hs_call_external_id"] == f"callhook:telnyx:{session}"
    assert props["hs_call_status"] == statuses()["answered"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == caller
    assert props["hs_call_to_number"] == COMPANY
    assert props["hs_call_duration"] == "90000"  # answer → hangup, in ms
    assert call["associations"]["contacts"] == [contact_id]


def test_outbound_busy_call_is_logged_busy_on_the_callee(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    callee = "+35319605861"
    session = str(uuid.uuid4())
    bodies = [
        webhook("call.initiated__outgoing.json", session, START, to=callee),
        webhook(
            "call.hangup__doc_call_rejected.json",
            session,
            START + timedelta(seconds=4),
            hangup_cause="user_busy",
            start_time=iso(START),
        ),
    ]
    deliver_shuffled(client, bodies, twice=[1], seed="telnyx-busy")

    props = settled(hubspot, callee, hs_call_status=statuses()["busy"])["properties"]
    assert props["hs_call_direction"] == "OUTBOUND"
    assert props["hs_call_from_number"] == COMPANY
    assert props["hs_call_to_number"] == callee


def test_unanswered_inbound_call_is_logged_as_no_answer(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    caller = "+12025550145"
    session = str(uuid.uuid4())
    bodies = [
        webhook("call.initiated__doc_incoming.json", session, START, **{"from": caller}),
        # The caller gave up while it rang: originator_cancel states no outcome; with no
        # answer seen, callhook infers "no answer".
        webhook(
            "call.hangup__incoming_normal_clearing.json",
            session,
            START + timedelta(seconds=25),
            hangup_cause="originator_cancel",
        ),
    ]
    deliver_shuffled(client, bodies, twice=[], seed="telnyx-missed")

    props = settled(hubspot, caller, hs_call_status=statuses()["no_answer"])["properties"]
    assert props["hs_call_direction"] == "INBOUND"


def test_wrong_or_missing_token_is_refused_and_not_kept(client) -> None:  # type: ignore[no-untyped-def]
    body = webhook("call.initiated__doc_incoming.json", str(uuid.uuid4()), START)
    for token in ("wrong-secret", None):
        response = post(client, body, token=token)
        assert response.status_code == 401
        assert response.json["error"] == "auth_failed"


def test_a_new_event_type_is_kept_unmapped_with_its_reason(client) -> None:  # type: ignore[no-untyped-def]
    body = webhook("call.answered__incoming.json", str(uuid.uuid4()), START)
    body["data"]["event_type"] = "call.brand.new"
    assert_kept_unmapped(post(client, body), "no event rule matches this payload")
