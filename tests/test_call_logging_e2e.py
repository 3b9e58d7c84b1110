"""End to end: webhooks over HTTP → real Redis → real Celery worker → fake HubSpot over HTTP.

Each test asserts what a sales team would check in HubSpot: one call record per
call, with the right contact, direction, duration, numbers and status.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import pytest
from sqlmodel import Session, select

from tests.conftest import KAVKOM_SECRET, load_fixture, wait_until
from worker.core.db import get_engine
from worker.core.models import Call, CrmStatus, WebhookEvent

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}


def post(client, payload: dict[str, Any]):  # type: ignore[no-untyped-def]
    response = client.post("/webhooks/kavkom", json=payload, headers=AUTH)
    assert response.status_code == 200, response.json
    return response


def cdr(call_id: str, number: str = "33612345678", duration: int = 120) -> dict[str, Any]:
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload.update(callUuid=call_id, number=number, duration=duration)
    return payload


def ws(name: str, call_id: str) -> dict[str, Any]:
    payload = json.loads(load_fixture("kavkom", name))
    payload["data"]["callUuid"] = call_id
    return payload


def calls_for(hubspot, number: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        c
        for c in hubspot.calls()
        if number
        in (c["properties"].get("hs_call_to_number"), c["properties"].get("hs_call_from_number"))
    ]


def call_row(call_id: str) -> Call | None:
    with Session(get_engine()) as session:
        return session.exec(select(Call).where(Call.platform_call_id == call_id)).first()


def barrier(client, hubspot, tag: str) -> None:  # type: ignore[no-untyped-def]
    """Send a fresh call and wait for it: everything queued before it has been handled."""
    number = "3361" + str(zlib.crc32(tag.encode()) % 10**7).zfill(7)  # a valid French mobile
    post(client, cdr(f"barrier-{tag}", number=number))
    wait_until(lambda: calls_for(hubspot, "+" + number), timeout=30)


def test_seed_cdr_logs_exactly_one_call_on_the_contact(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 12 34 56 78")
    seed = json.loads(load_fixture("kavkom", "cdr__outbound.json"))  # verbatim from Kavkom's docs
    post(client, seed)
    (call,) = wait_until(lambda: calls_for(hubspot, "+33612345678"), timeout=30)
    props = call["properties"]
    assert props["hs_call_direction"] == "OUTBOUND"
    assert props["hs_call_duration"] == "120000"
    assert props["hs_call_to_number"] == "+33612345678"
    assert props["hs_call_status"] == "COMPLETED"
    assert props["hs_call_title"] == "Outbound call to Ada Lovelace"
    assert call["associations"]["contacts"] == [contact_id]

    again = client.post("/webhooks/kavkom", json=seed, headers=AUTH)
    assert again.json["status"] == "duplicate"
    barrier(client, hubspot, "seed")
    assert len(calls_for(hubspot, "+33612345678")) == 1
    patched = [r for r in hubspot.requests() if r["method"] == "PATCH"]
    assert not any(call["id"] in r["path"] for r in patched)


@pytest.mark.parametrize(
    ("stored_as", "number"),
    [
        ("+33 6 12 34 56 01", "33612345601"),
        ("0612345602", "33612345602"),
        ("06.12.34.56.03", "33612345603"),
        ("+33612345604", "33612345604"),
        ("0033 6 12 34 56 05", "33612345605"),
        ("(+33) 6-12-34-56-06", "33612345606"),
    ],
)
def test_contact_found_whatever_format_its_number_was_typed_in(  # type: ignore[no-untyped-def]
    client, hubspot, stored_as: str, number: str
) -> None:
    contact_id = hubspot.add_contact(firstname="Grace", lastname="Hopper", mobilephone=stored_as)
    post(client, cdr(f"fmt-{number}", number=number))
    (call,) = wait_until(lambda: calls_for(hubspot, "+" + number), timeout=30)
    assert call["associations"]["contacts"] == [contact_id]


def test_live_events_out_of_order_and_twice_make_one_call_updated_in_place(  # type: ignore[no-untyped-def]
    client, hubspot
) -> None:
    call_id = "live-order-1"
    for name in (
        "call__finished_inbound.json",
        "call__ringing_inbound.json",
        "call__active_inbound.json",
        "call__finished_inbound.json",
    ):
        post(client, ws(name, call_id))
    (first,) = wait_until(lambda: calls_for(hubspot, "+380501234567"), timeout=30)
    assert first["properties"]["hs_call_direction"] == "INBOUND"
    assert first["properties"]["hs_call_from_number"] == "+380501234567"
    # The finished message said 125 s; the CDR's figure is the final word.
    final = ws("call__finished_inbound.json", call_id)["data"]
    post(client, {"event": "cdr", **final, "duration": 131})
    wait_until(
        lambda: (
            calls_for(hubspot, "+380501234567")[0]["properties"]["hs_call_duration"] == "131000"
        ),
        timeout=30,
    )
    assert len(calls_for(hubspot, "+380501234567")) == 1
    row = call_row(call_id)
    assert row is not None and row.crm_id == first["id"] and row.agent == "1001"


def test_rate_limited_then_recovering_hubspot_gets_the_call_once(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    hubspot.fail_next(3, 429, retry_after=1)
    post(client, cdr("flaky-429", number="33612345611"))
    wait_until(lambda: calls_for(hubspot, "+33612345611"), timeout=60)
    statuses = [r["status"] for r in hubspot.requests()]
    assert statuses.count(429) == 3
    barrier(client, hubspot, "429")
    assert len(calls_for(hubspot, "+33612345611")) == 1


def test_hubspot_down_for_a_while_then_back_gets_the_call_once(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    hubspot.set_down(502)
    post(client, cdr("down-502", number="33612345612"))
    # Down long enough for the worker to have tried again: two refused attempts.
    wait_until(lambda: [r["status"] for r in hubspot.requests()].count(502) >= 2, timeout=30)
    hubspot.set_down(None)
    wait_until(lambda: calls_for(hubspot, "+33612345612"), timeout=90)
    barrier(client, hubspot, "502")
    assert len(calls_for(hubspot, "+33612345612")) == 1
    row = call_row("down-502")
    assert row is not None and row.crm_status == CrmStatus.SYNCED


def test_permanent_hubspot_error_is_recorded_with_its_reason(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    hubspot.fail_next(1, 400, path_prefix="/crm/v3/objects/calls")
    post(client, cdr("perm-400", number="33612345613"))
    row = wait_until(
        lambda: (r := call_row("perm-400")) and r.crm_status == CrmStatus.FAILED and r, timeout=30
    )
    assert "HubSpot 400" in (row.crm_error or "")
    assert calls_for(hubspot, "+33612345613") == []


def test_broker_down_webhook_still_accepted_and_logged_when_back(  # type: ignore[no-untyped-def]
    client, hubspot, redis_server
) -> None:
    redis_server.stop()
    try:
        started = time.monotonic()
        response = post(client, cdr("broker-down", number="33612345614"))
        assert time.monotonic() - started < 10
        with Session(get_engine()) as session:
            event = session.get(WebhookEvent, response.json["id"])
            assert event is not None and event.enqueued_at is None
    finally:
        redis_server.start()
    wait_until(lambda: calls_for(hubspot, "+33612345614"), timeout=90)
    assert len(calls_for(hubspot, "+33612345614")) == 1


def test_worker_killed_mid_retry_still_logs_once(client, hubspot, stack) -> None:  # type: ignore[no-untyped-def]
    hubspot.set_down(503)
    post(client, cdr("killed-worker", number="33612345615"))
    wait_until(lambda: any(r["status"] == 503 for r in hubspot.requests()), timeout=30)
    # Mid-retry: the failure is stored and the retry waits out its backoff. (A kill during
    # the request itself leaves the call's two-minute lease to expire first.)
    wait_until(lambda: (row := call_row("killed-worker")) and row.crm_error, timeout=30)
    stack["worker"].kill()
    hubspot.set_down(None)
    stack["worker"].start()
    wait_until(lambda: calls_for(hubspot, "+33612345615"), timeout=90)
    barrier(client, hubspot, "killed")
    assert len(calls_for(hubspot, "+33612345615")) == 1


def test_create_whose_answer_was_lost_is_found_not_repeated(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    # HubSpot stores the call but the answer never arrives (a proxy timeout, a worker
    # killed mid-request): the retry must find that record instead of creating another.
    hubspot.lose_responses(1, path_prefix="/crm/v3/objects/calls")
    post(client, cdr("lost-answer", number="33612345616", duration=61))
    (call,) = wait_until(lambda: calls_for(hubspot, "+33612345616"), timeout=30)
    row = wait_until(
        lambda: (r := call_row("lost-answer")) and r.crm_status == CrmStatus.SYNCED and r,
        timeout=60,
    )
    assert row.crm_id == call["id"]
    searched = [r for r in hubspot.requests() if r["path"] == "/crm/v3/objects/calls/search"]
    assert searched and searched[-1]["status"] == 200
    barrier(client, hubspot, "lost")
    assert len(calls_for(hubspot, "+33612345616")) == 1
