"""Voximplant Kit end to end: callbacks over HTTP → real worker → the fake HubSpot.

Each call's callbacks are posted shuffled, some twice, as Kit's retries and batching can
deliver them; each test then checks what a sales team sees in HubSpot: one call, on the
right contact, with direction, numbers, duration and status.
"""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import pytest

from tests.conftest import ROOT, WEBHOOK_SECRETS, load_fixture, wait_until
from tests.platforms.voximplant.test_voximplant_mapping import INBOUND, OUTBOUND
from tests.unmapped import assert_kept_unmapped
from webhook_receiver.mapping import load_mappings

SECRET = WEBHOOK_SECRETS["voximplant"]
URL = "/webhooks/voximplant"
COMPANY = "+33184880000"  # the fixtures' Kit number


def post(client, payload: dict[str, Any], token: str | None = SECRET):  # type: ignore[no-untyped-def]
    query = {} if token is None else {"token": token}
    return client.post(URL, json=payload, query_string=query)


def accepted(client, payload: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    response = post(client, payload)
    assert response.status_code == 200, response.json
    return response.json["status"]


def fixture_for(name: str, renames: dict[str, str]) -> dict[str, Any]:
    """A fixture moved onto another call: its session id and customer number replaced."""
    text = load_fixture("voximplant", name).decode()
    session_id = next(iter(renames))
    assert session_id in text, (name, session_id)
    for old, new in renames.items():
        text = text.replace(old, new)
    return json.loads(text)


def calls_for(hubspot, number: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        c
        for c in hubspot.calls()
        if number
        in (c["properties"].get("hs_call_to_number"), c["properties"].get("hs_call_from_number"))
    ]


def new_call(session_id: str, customer: str, **fields: Any) -> dict[str, Any]:
    """One call for a `new_calls` callback: inbound and answered unless `fields` say otherwise."""
    payload = fixture_for(
        "new_calls__inbound_answered.json", {"1126400": session_id, "33678120001": customer}
    )
    call = payload["callbacks"][0]["new_calls"]["calls"][0]
    call.update(fields)
    return call


def new_calls_callback(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"callbacks": [{"hash": "0" * 32, "type": "new_calls", "new_calls": {"calls": calls}}]}


def barrier(client, hubspot, tag: str) -> None:  # type: ignore[no-untyped-def]
    """Send a fresh call and wait for it: everything queued before it has been handled."""
    number = "3361" + str(zlib.crc32(f"voximplant-{tag}".encode()) % 10**7).zfill(7)
    call = new_call(str(8_000_000 + zlib.crc32(tag.encode()) % 10**6), number)
    accepted(client, new_calls_callback([call]))
    wait_until(lambda: calls_for(hubspot, "+" + number), timeout=30)


def deliver_shuffled(client, bodies: list[dict[str, Any]], twice: list[int], seed: str) -> None:  # type: ignore[no-untyped-def]
    """Post `bodies` in a shuffled order, those at the `twice` indexes two times."""
    sends = bodies + [bodies[i] for i in twice]
    random.Random(seed).shuffle(sends)
    statuses = [accepted(client, b) for b in sends]
    assert statuses.count("duplicate") == len(twice), statuses


def settled(hubspot, number: str, **expected: str):  # type: ignore[no-untyped-def]
    """The number's one HubSpot call once it shows `expected` (later callbacks update it)."""

    def check() -> dict[str, Any] | None:
        found = calls_for(hubspot, number)
        if len(found) == 1 and all(found[0]["properties"].get(k) == v for k, v in expected.items()):
            return found[0]
        return None

    return wait_until(check, timeout=45)


def hubspot_call_outcomes() -> tuple[dict[str, str], dict[str, str]]:
    """What mappings/hubspot.yaml sends for each outcome: (hs_call_status, hs_call_disposition)."""
    call = load_mappings(ROOT / "mappings").hubspot.call  # type: ignore[union-attr]
    return (
        {str(k): v for k, v in call.status.items()},
        {str(k): v for k, v in call.disposition.items()},
    )


def test_inbound_answered_call_is_logged_once_on_the_caller(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Ines", lastname="Garnier", phone="06 78 12 01 01")
    renames = {"1126400": "9100401", "33678120001": "33678120101"}
    assigned, finished, new_calls, finalized = (
        fixture_for(name, renames)
        for name in (
            "call_assigned_to_agent__queue_call.json",
            "finished_call__inbound_answered.json",
            "new_calls__inbound_answered.json",
            "call_finalized__inbound_answered.json",
        )
    )
    # Kit batches: one delivery carries two callbacks of the call.
    batch = {"callbacks": finished["callbacks"] + finalized["callbacks"]}
    deliver_shuffled(client, [assigned, new_calls, batch], twice=[0, 1], seed="inbound")

    status, disposition = hubspot_call_outcomes()
    settled(hubspot, "+33678120101", hs_call_status=status["answered"])
    barrier(client, hubspot, "inbound")
    (call,) = calls_for(hubspot, "+33678120101")
    props = call["properties"]
    assert props["hs_call_status"] == status["answered"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == "+33678120101"
    assert props["hs_call_to_number"] == COMPANY
    assert props["hs_call_duration"] == "221000"
    assert props["hs_call_disposition"] == disposition["answered"]
    assert (
        props["hs_call_recording_url"] == "https://kit-records.example.com/2024/05/14/9100401.mp3"
    )
    assert call["associations"]["contacts"] == [contact_id]


def test_outbound_answered_call_is_logged_once_on_the_callee(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Marc", lastname="Aubry", phone="06.78.12.01.02")
    renames = {"1126510": "9100402", "33678120002": "33678120102"}
    bodies = [
        fixture_for(name, renames)
        for name in (
            "new_calls__outbound_answered.json",
            "finished_call__outbound_answered.json",
            "call_finalized__outbound_answered.json",
        )
    ]
    deliver_shuffled(client, bodies, twice=[1, 2], seed="outbound")

    status, _ = hubspot_call_outcomes()
    settled(hubspot, "+33678120102", hs_call_status=status["answered"])
    barrier(client, hubspot, "outbound")
    (call,) = calls_for(hubspot, "+33678120102")
    props = call["properties"]
    assert props["hs_call_status"] == status["answered"]
    assert props["hs_call_direction"] == "OUTBOUND"
    assert props["hs_call_from_number"] == COMPANY
    assert props["hs_call_to_number"] == "+33678120102"
    assert props["hs_call_duration"] == "233000"
    assert call["associations"]["contacts"] == [contact_id]


def test_missed_inbound_call_is_logged_once_as_not_answered(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Lea", lastname="Roux", phone="0678120103")
    renames = {"1126602": "9100403", "33678120003": "33678120103"}
    bodies = [
        fixture_for(name, renames)
        for name in (
            "new_calls__inbound_missed.json",
            "finished_call__inbound_missed.json",
            "call_finalized__inbound_missed.json",
        )
    ]
    deliver_shuffled(client, bodies, twice=[0, 1], seed="missed")

    status, disposition = hubspot_call_outcomes()
    settled(hubspot, "+33678120103", hs_call_status=status["no_answer"])
    barrier(client, hubspot, "missed")
    (call,) = calls_for(hubspot, "+33678120103")
    props = call["properties"]
    assert props["hs_call_status"] == status["no_answer"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == "+33678120103"
    assert props["hs_call_to_number"] == COMPANY
    # Kit's duration is the time the caller waited; the completion code says nobody answered.
    assert props["hs_call_duration"] == "27000"
    assert props["hs_call_disposition"] == disposition["no_answer"]
    assert "hs_call_recording_url" not in props
    assert call["associations"]["contacts"] == [contact_id]


# Every (call type, completion code) the Kit docs list, and codes they don't: the outcome each
# becomes (tests/platforms/voximplant/test_voximplant_mapping.py pins it), as HubSpot gets it.
CODE_CASES = [
    *[(True, code) for code in INBOUND],
    *[(False, code) for code in OUTBOUND],
    (True, "Some_Future_Code"),
    (False, "Some_Future_Code"),
]


def test_every_completion_code_reaches_hubspot_status_and_disposition(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    status, disposition = hubspot_call_outcomes()
    expected: dict[str, str] = {}
    calls = []
    for index, (is_incoming, code) in enumerate(CODE_CASES):
        number = f"336781202{index:02d}"
        outcome = (INBOUND if is_incoming else OUTBOUND).get(code, "failed")
        expected["+" + number] = outcome
        calls.append(
            new_call(
                f"91005{index:02d}",
                number,
                is_incoming=is_incoming,
                completion_code=code,
                duration=0,
                record_url="",
            )
        )
    # One `new_calls` callback listing every call, as Kit may batch them.
    accepted(client, new_calls_callback(calls))

    wait_until(lambda: all(calls_for(hubspot, n) for n in expected), timeout=60)
    barrier(client, hubspot, "codes")
    for number, outcome in expected.items():
        (call,) = calls_for(hubspot, number)
        props = call["properties"]
        assert props["hs_call_status"] == status[outcome], (number, outcome)
        assert props.get("hs_call_disposition") == disposition.get(outcome), (number, outcome)


def test_wrong_or_missing_token_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(load_fixture("voximplant", "new_calls__inbound_answered.json"))
    wrong = post(client, payload, token="not-the-secret")
    assert wrong.status_code == 401
    assert wrong.json["reason"] == "invalid credentials"
    missing = post(client, payload, token=None)
    assert missing.status_code == 401
    assert "query parameter 'token'" in missing.json["reason"]
    # Kit's own `hash` is constant per event type: it is no credential.
    in_header = client.post(URL, json=payload, headers={"Authorization": f"Bearer {SECRET}"})
    assert in_header.status_code == 401


def test_previous_token_still_accepted_while_rotating(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VOXIMPLANT_WEBHOOK_SECRET_PREVIOUS", "the-old-voximplant-token")
    payload = json.loads(load_fixture("voximplant", "scenario_updated__published.json"))
    payload["callbacks"][0]["scenario_updated"]["scenario_id"] = 15999  # a new delivery
    response = post(client, payload, token="the-old-voximplant-token")
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert post(client, payload, token="the-old-voximplant-token-2").status_code == 401


def test_unknown_event_type_is_kept_with_the_reason(client) -> None:  # type: ignore[no-untyped-def]
    payload = {"callbacks": [{"hash": "0" * 32, "type": "call_teleported", "call_teleported": {}}]}
    response = post(client, payload)
    assert_kept_unmapped(response, "callbacks[0]: no event rule matches this payload")


@pytest.mark.parametrize(
    "name", ["scenario_updated__published.json", "wrap_up_code_set__callback_later.json"]
)
def test_known_ignored_event_answers_200_ignored(client, name: str) -> None:  # type: ignore[no-untyped-def]
    response = post(client, json.loads(load_fixture("voximplant", name)))
    assert response.status_code == 200
    assert response.json["status"] == "ignored"
    assert "ignore rule" in response.json["reason"]
