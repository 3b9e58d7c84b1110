"""UIS end to end: notifications over HTTP → real Redis → real worker → fake HubSpot.

Each call posts its session's notifications, some of them twice, in a shuffled order
(UIS promises no order), as JSON, GET and form templates. The call must show up
in HubSpot exactly once, with what a sales team checks there.
"""

from __future__ import annotations

import json
import random
import zlib
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tests.conftest import WEBHOOK_SECRETS, load_fixture, wait_until
from tests.unmapped import assert_kept_unmapped

URL = "/webhooks/uis"
SECRET = WEBHOOK_SECRETS["uis"]
VIRTUAL = "+74951234567"  # the virtual number of every fixture


def fixture(name: str, session: int, number: str, **changes: Any) -> dict[str, Any]:
    """A JSON template fixture, moved to another call session and client number."""
    payload = json.loads(load_fixture("uis", name))
    payload.update(call_session_id=session, contact_phone_number=number, **changes)
    return payload


def template_pairs(name: str, session: int, number: str, **changes: str) -> str:
    """A GET/form template fixture (values keep UIS's quotes), moved likewise."""
    pairs = parse_qsl(load_fixture("uis", name).decode().strip(), keep_blank_values=True)
    values = {"call_session_id": str(session), "contact_phone_number": f'"{number}"', **changes}
    return urlencode([(k, values.get(k, v)) for k, v in pairs])


def deliver(client, delivery: tuple[str, Any]):  # type: ignore[no-untyped-def]
    kind, body = delivery
    if kind == "json":
        response = client.post(URL, query_string={"token": SECRET}, json=body)
    elif kind == "form":
        response = client.post(
            URL,
            query_string={"token": SECRET},
            data=body,
            content_type="application/x-www-form-urlencoded",
        )
    else:
        response = client.get(f"{URL}?{body}&{urlencode({'token': SECRET})}")
    assert response.status_code == 200, response.json
    assert response.json["status"] in ("accepted", "duplicate"), response.json
    return response


def deliver_shuffled(client, deliveries: list[tuple[str, Any]], twice: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Post every delivery, those at the `twice` indexes a second time, in a fixed shuffle."""
    batch = deliveries + [deliveries[i] for i in twice]
    random.Random(len(batch)).shuffle(batch)
    for delivery in batch:
        deliver(client, delivery)


def calls_for(hubspot, number: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        c
        for c in hubspot.calls()
        if number
        in (c["properties"].get("hs_call_to_number"), c["properties"].get("hs_call_from_number"))
    ]


def logged_as(hubspot, number: str, **expected: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    """The call with this number once HubSpot holds the expected properties (updates land)."""
    for call in calls_for(hubspot, number):
        if all(call["properties"].get(k) == v for k, v in expected.items()):
            return call
    return None


def barrier(client, hubspot, tag: str) -> None:  # type: ignore[no-untyped-def]
    """Send a fresh call and wait for it: everything queued before it has been handled."""
    digits = str(zlib.crc32(tag.encode()) % 10**7).zfill(7)
    number = "7916" + digits  # a valid Russian mobile
    session = 900_000_000 + int(digits)
    deliver(client, ("json", fixture("call_finished__inbound_answered.json", session, number)))
    wait_until(lambda: calls_for(hubspot, "+" + number), timeout=30)


def test_inbound_answered_call_is_logged_once_with_its_recording(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    session, number = 310_000_001, "79261110001"
    contact_id = hubspot.add_contact(
        firstname="Анна", lastname="Смирнова", phone="+7 926 111-00-01"
    )
    deliveries = [
        ("json", fixture("incoming_call__inbound.json", session, number)),
        ("json", fixture("waiting_for_answer__inbound.json", session, number)),
        ("query", template_pairs("talk_started__inbound_quoted.query", session, number)),
        ("json", fixture("talk_finished__inbound.json", session, number)),
        ("json", fixture("call_finished__inbound_answered.json", session, number)),
        ("json", fixture("recording_ready__inbound.json", session, number)),
    ]
    deliver_shuffled(client, deliveries, twice=[1, 4, 5])

    recording = "https://app.uiscom.ru/system/media/talk/237859081/9f6b2c1e0d8a4e3b/"
    call = wait_until(
        lambda: logged_as(
            hubspot,
            "+" + number,
            hs_call_duration="42000",  # talk time, not the 50 s the session lasted
            hs_call_recording_url=recording,
        ),
        timeout=60,
    )
    props = call["properties"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == "+" + number
    assert props["hs_call_to_number"] == VIRTUAL
    assert props["hs_call_status"] == "COMPLETED"
    assert props["hs_call_title"] == "Inbound call from Анна Смирнова"
    assert call["associations"]["contacts"] == [contact_id]

    barrier(client, hubspot, "inbound-answered")
    assert len(calls_for(hubspot, "+" + number)) == 1


def test_outbound_answered_call_is_logged_once(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    session, number = 310_000_002, "79031110002"
    contact_id = hubspot.add_contact(
        firstname="Олег", lastname="Кузнецов", phone="+7 903 111-00-02"
    )
    out = {"direction": "out"}
    deliveries = [
        ("json", fixture("outbound_call__employee_dials.json", session, number)),
        ("json", fixture("waiting_for_answer__inbound.json", session, number, **out)),
        ("json", fixture("talk_started__inbound.json", session, number, **out)),
        (
            "json",
            fixture("talk_finished__inbound.json", session, number, talk_time_duration=95, **out),
        ),
        ("json", fixture("call_finished__outbound_answered.json", session, number)),
    ]
    deliver_shuffled(client, deliveries, twice=[0, 4])

    call = wait_until(
        lambda: logged_as(hubspot, "+" + number, hs_call_duration="95000"), timeout=60
    )
    props = call["properties"]
    assert props["hs_call_direction"] == "OUTBOUND"
    assert props["hs_call_from_number"] == VIRTUAL
    assert props["hs_call_to_number"] == "+" + number
    assert props["hs_call_status"] == "COMPLETED"
    assert props["hs_call_title"] == "Outbound call to Олег Кузнецов"
    assert call["associations"]["contacts"] == [contact_id]

    barrier(client, hubspot, "outbound-answered")
    assert len(calls_for(hubspot, "+" + number)) == 1


def test_missed_inbound_call_is_logged_once_as_no_answer(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    session, number = 310_000_003, "79161110003"
    contact_id = hubspot.add_contact(
        firstname="Ирина", lastname="Волкова", phone="+7 916 111-00-03"
    )
    deliveries = [
        ("json", fixture("incoming_call__inbound.json", session, number)),
        ("json", fixture("waiting_for_answer__inbound.json", session, number)),
        ("form", template_pairs("lost_call__inbound_quoted.form", session, number)),
        ("json", fixture("call_finished__inbound_missed.json", session, number)),
    ]
    deliver_shuffled(client, deliveries, twice=[2, 3])

    call = wait_until(
        lambda: logged_as(hubspot, "+" + number, hs_call_status="NO_ANSWER"), timeout=60
    )
    props = call["properties"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == "+" + number
    assert props["hs_call_to_number"] == VIRTUAL
    assert props["hs_call_duration"] == "0"
    assert call["associations"]["contacts"] == [contact_id]

    barrier(client, hubspot, "missed")
    assert len(calls_for(hubspot, "+" + number)) == 1
    assert logged_as(hubspot, "+" + number, hs_call_status="NO_ANSWER", hs_call_duration="0")


def test_wrong_or_missing_token_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(load_fixture("uis", "incoming_call__inbound.json"))
    wrong = client.post(URL, query_string={"token": "not-the-secret"}, json=payload)
    assert wrong.status_code == 401
    assert wrong.json["reason"] == "invalid credentials"
    missing = client.post(URL, json=payload)
    assert missing.status_code == 401
    assert "query parameter 'token'" in missing.json["reason"]
    assert SECRET not in json.dumps([wrong.json, missing.json])


def test_unknown_event_is_kept_with_the_reason(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        URL,
        query_string={"token": SECRET},
        json={"event": "chat_started", "call_session_id": 310_000_009},
    )
    assert_kept_unmapped(response, "no event rule matches this payload")


def test_known_ignored_event_is_accepted_and_ignored(client) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(load_fixture("uis", "outbound_leg__ignored.json"))
    response = client.post(URL, query_string={"token": SECRET}, json=payload)
    assert response.status_code == 200
    assert response.json["status"] == "ignored"
