"""Kwebbl end to end: a call's events over HTTP → Redis → the real worker → fake HubSpot.

Kwebbl warns that "the order of events could change from call to call", so each call's
events are posted shuffled, some twice, and HubSpot must still get exactly one call.
Payloads follow the document's event structure (Realtime API, "Receiving events from
subscriptions"): an inbound call is the caller's leg plus the leg Kwebbl rings the agent
on, joined by `bridged`, as in the document's "Bridged" example.

Kwebbl events carry times but no duration, and callhook derives none from the times
(hs_call_duration is read from `talk_s`/`duration_s` only): the calls below have no
hs_call_duration yet, and these tests leave that expectation out rather than fake it.
"""

from __future__ import annotations

import json
import random
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from tests.conftest import WEBHOOK_SECRETS, load_fixture, wait_until
from tests.unmapped import assert_kept_unmapped
from worker.core.db import get_engine
from worker.core.models import Call, CrmStatus

URL = "/webhooks/kwebbl?token=" + WEBHOOK_SECRETS["kwebbl"]
DIALPLAN = {"extension_id": "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e", "number": "33184808080"}
AGENT_IN = {"extension_id": "a9e47a9e47a9e47a9e47a9e47a9e47a9", "number": "030"}
AGENT_OUT = {
    "extension_id": "0b7b0b7b0b7b0b7b0b7b0b7b0b7b0b7b",
    "number": "010",
    "caller_id": "33184808081",
}
START = datetime(2026, 3, 18, 10, 0, tzinfo=UTC)


def at(second: float) -> str:
    """ISO 8601 with milliseconds, UTC, as Kwebbl writes `time`."""
    return (START + timedelta(seconds=second)).isoformat(timespec="milliseconds")[:-6] + "Z"


def event(
    event_id: str,
    event_type: str,
    call_id: str,
    direction: str,
    sender: dict[str, str],
    receiver: dict[str, str],
    second: float,
    **extra: Any,
) -> dict[str, Any]:
    """The documented base structure: id, event_type, call_id, from, to, direction, time."""
    return {
        "id": event_id,
        "event_type": event_type,
        "call_id": call_id,
        "from": sender,
        "to": receiver,
        "direction": direction,
        **extra,
        "time": at(second),
    }


def bridged(event_id: str, legs: list[dict[str, Any]], second: float) -> dict[str, Any]:
    """ "Bridged": call_id/from/to/direction of each leg under `calls`."""
    return {"id": event_id, "event_type": "bridged", "calls": legs, "time": at(second)}


def leg(call_id: str, direction: str, sender: dict[str, str], receiver: dict[str, str]):  # type: ignore[no-untyped-def]
    return {"call_id": call_id, "from": sender, "to": receiver, "direction": direction}


def post(client, payload: dict[str, Any]):  # type: ignore[no-untyped-def]
    response = client.post(URL, json=payload)
    assert response.status_code == 200, response.json
    return response


def post_shuffled(client, payloads: list[dict[str, Any]], seed: int) -> None:  # type: ignore[no-untyped-def]
    """Every payload in a random order, three of them delivered twice."""
    shuffler = random.Random(seed)
    deliveries = payloads + shuffler.sample(payloads, 3)
    shuffler.shuffle(deliveries)
    for payload in deliveries:
        post(client, payload)


def calls_for(hubspot, number: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        c
        for c in hubspot.calls()
        if number
        in (c["properties"].get("hs_call_to_number"), c["properties"].get("hs_call_from_number"))
    ]


def call_row(call_id: str) -> Call | None:
    with Session(get_engine()) as session:
        return session.exec(
            select(Call).where(Call.platform == "kwebbl", Call.platform_call_id == call_id)
        ).first()


def settled(hubspot, call_id: str, number: str, status: str) -> bool:  # type: ignore[no-untyped-def]
    """The call's HubSpot record shows `status`, and the call has nothing left to send."""
    row = call_row(call_id)
    if row is None or row.crm_status != CrmStatus.SYNCED or row.crm_id is None:
        return False
    found = [c for c in calls_for(hubspot, number) if c["id"] == row.crm_id]
    return bool(found) and found[0]["properties"].get("hs_call_status") == status


def barrier(client, hubspot, tag: str) -> None:  # type: ignore[no-untyped-def]
    """Send a fresh Kwebbl call and wait for it: everything queued before it was handled."""
    number = "3365" + str(zlib.crc32(tag.encode()) % 10**7).zfill(7)  # a valid French mobile
    caller, call_id = {"number": number}, f"barrier-{tag}"
    post(client, event(f"{call_id}-1", "created", call_id, "inbound", caller, DIALPLAN, 0))
    ended = event(f"{call_id}-2", "terminated", call_id, "inbound", caller, DIALPLAN, 9)
    post(client, {**ended, "reason": "hangup"})
    wait_until(lambda: calls_for(hubspot, "+" + number), timeout=30)


def inbound_legs(tag: str, caller: dict[str, str]) -> tuple[str, str, list[dict[str, Any]]]:
    """The caller's leg to the dialplan, and the leg Kwebbl rings the agent on."""
    a, b = f"{tag}-caller-leg", f"{tag}-agent-leg"
    agent_leg_from = {"number": caller["number"]}
    return (
        a,
        b,
        [
            event(f"{tag}-01", "created", a, "inbound", caller, DIALPLAN, 0.0),
            event(f"{tag}-02", "ringing", a, "inbound", caller, DIALPLAN, 0.2),
            event(f"{tag}-03", "created", b, "outbound", agent_leg_from, AGENT_IN, 0.4),
            event(f"{tag}-04", "ringing", b, "outbound", agent_leg_from, AGENT_IN, 0.5),
        ],
    )


def test_inbound_answered_call_is_one_completed_call_on_the_contact(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 55 50 10 01")
    # External numbers are E.164 "with or without a + or 00".
    caller = {"number": "0033655501001", "caller_id": "0033655501001"}
    a, b, ringing = inbound_legs("kw-in", caller)
    agent_leg_from = {"number": caller["number"]}
    payloads = [
        *ringing,
        event("kw-in-05", "answered", b, "outbound", agent_leg_from, AGENT_IN, 8.0),
        event("kw-in-06", "answered", a, "inbound", caller, DIALPLAN, 8.1),
        bridged(
            "kw-in-07",
            [leg(a, "inbound", caller, DIALPLAN), leg(b, "outbound", agent_leg_from, AGENT_IN)],
            8.2,
        ),
        event("kw-in-08", "holding", a, "inbound", caller, DIALPLAN, 30.0),
        event("kw-in-09", "resume", a, "inbound", caller, DIALPLAN, 40.0),
        event("kw-in-10", "start-recording", a, "inbound", caller, DIALPLAN, 41.0),
        event("kw-in-11", "terminated", b, "outbound", agent_leg_from, AGENT_IN, 95.0),
        event("kw-in-12", "terminated", a, "inbound", caller, DIALPLAN, 95.3, reason="hangup"),
    ]
    post_shuffled(client, payloads, seed=1)

    wait_until(lambda: settled(hubspot, a, "+33655501001", "COMPLETED"), timeout=60)
    barrier(client, hubspot, "kw-in")
    (call,) = calls_for(hubspot, "+33655501001")
    props = call["properties"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == "+33655501001"
    assert props["hs_call_to_number"] == "+33184808080"  # the dialplan's public number
    assert props["hs_call_status"] == "COMPLETED"
    assert props["hs_call_title"] == "Inbound call from Ada Lovelace"
    assert call["associations"]["contacts"] == [contact_id]
    row, agent_leg = call_row(a), call_row(b)
    assert row is not None and agent_leg is not None
    assert row.crm_id == call["id"] and row.outcome == "answered"
    # The agent who answered (the agent's leg, and `bridged`), not the dialplan.
    assert row.agent == AGENT_IN["extension_id"]
    assert row.answered_at == START + timedelta(seconds=8)
    assert row.ended_at == START + timedelta(seconds=95.3)
    assert agent_leg.merged_into == row.id and agent_leg.crm_id is None


def test_outbound_answered_call_is_one_completed_call_to_the_contact(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Alan", lastname="Turing", mobilephone="0655501002")
    customer = {"number": "+33655501002"}
    a, b = "kw-out-agent-leg", "kw-out-customer-leg"
    customer_leg_from = {"number": AGENT_OUT["caller_id"]}
    payloads = [
        event("kw-out-01", "created", a, "outbound", AGENT_OUT, customer, 0.0),
        event("kw-out-02", "ringing", a, "outbound", AGENT_OUT, customer, 1.0),
        event("kw-out-03", "answered", a, "outbound", AGENT_OUT, customer, 12.0),
        bridged(
            "kw-out-04",
            [
                leg(a, "outbound", AGENT_OUT, customer),
                leg(b, "outbound", customer_leg_from, customer),
            ],
            12.1,
        ),
        event("kw-out-05", "holding", a, "outbound", AGENT_OUT, customer, 20.0),
        event("kw-out-06", "resumed", a, "outbound", AGENT_OUT, customer, 25.0),
        event("kw-out-07", "stop_recording", a, "outbound", AGENT_OUT, customer, 69.0),
        event("kw-out-08", "terminated", a, "outbound", AGENT_OUT, customer, 70.0, reason="hangup"),
    ]
    post_shuffled(client, payloads, seed=2)

    wait_until(lambda: settled(hubspot, a, "+33655501002", "COMPLETED"), timeout=60)
    barrier(client, hubspot, "kw-out")
    (call,) = calls_for(hubspot, "+33655501002")
    props = call["properties"]
    assert props["hs_call_direction"] == "OUTBOUND"
    assert props["hs_call_from_number"] == "+33184808081"  # the agent's caller_id
    assert props["hs_call_to_number"] == "+33655501002"
    assert props["hs_call_status"] == "COMPLETED"
    assert call["associations"]["contacts"] == [contact_id]
    row = call_row(a)
    assert row is not None and row.crm_id == call["id"]
    assert row.agent == AGENT_OUT["extension_id"] and row.outcome == "answered"


def test_missed_inbound_call_is_one_no_answer_call_on_the_contact(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Grace", lastname="Hopper", phone="06.55.50.10.03")
    caller = {"number": "33655501003", "caller_id": "33655501003"}
    a, b, ringing = inbound_legs("kw-missed", caller)
    payloads = [
        *ringing,
        # Nobody picks up: the agent's phone stops ringing, the caller hangs up.
        event(
            "kw-missed-05",
            "terminated",
            b,
            "outbound",
            {"number": caller["number"]},
            AGENT_IN,
            24.8,
            reason="hangup",
        ),
        event("kw-missed-06", "terminated", a, "inbound", caller, DIALPLAN, 25.0, reason="hangup"),
    ]
    post_shuffled(client, payloads, seed=3)
    wait_until(lambda: settled(hubspot, a, "+33655501003", "NO_ANSWER"), timeout=60)
    barrier(client, hubspot, "kw-missed")
    (call,) = calls_for(hubspot, "+33655501003")
    props = call["properties"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == "+33655501003"
    assert props["hs_call_to_number"] == "+33184808080"
    assert props["hs_call_status"] == "NO_ANSWER"
    assert call["associations"]["contacts"] == [contact_id]
    # The agent's unanswered leg is never linked by a `bridged`: it stays unlogged.
    agent_leg = call_row(b)
    assert agent_leg is not None and agent_leg.crm_id is None and not agent_leg.ended


# -- the negative space --------------------------------------------------------------------


def test_wrong_or_missing_secret_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(load_fixture("kwebbl", "ringing__via_dialplan_inbound.json"))
    wrong = client.post("/webhooks/kwebbl?token=not-the-secret", json=body)
    assert wrong.status_code == 401 and wrong.json["reason"] == "invalid credentials"
    missing = client.post("/webhooks/kwebbl", json=body)
    assert missing.status_code == 401
    assert missing.json["reason"] == "missing credentials: expected query parameter 'token'"


def test_unknown_event_type_is_kept_with_the_reason(client) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(load_fixture("kwebbl", "ringing__via_dialplan_inbound.json"))
    body.update(id="kw-unknown-1", event_type="parked")
    response = client.post(URL, json=body)
    assert_kept_unmapped(response, "no event rule matches this payload")


def test_recording_event_is_known_and_ignored(client) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(load_fixture("kwebbl", "start-recording__seed_outbound.json"))
    response = client.post(URL, json=body)
    assert response.status_code == 200
    assert response.json["status"] == "ignored"
