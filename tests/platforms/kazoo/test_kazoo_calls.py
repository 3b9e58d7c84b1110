"""KAZOO end to end: channel events over HTTP → real Redis → real worker → fake HubSpot.

Each call is the platform's sequence of leg events (fixtures/SOURCES.md), posted in shuffled
order with some deliveries repeated, as KAZOO's per-leg hooks may arrive. Whatever the order,
HubSpot must get exactly one call, with what a sales team checks: direction, numbers,
duration, status and the contact.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from sqlmodel import Session, select

from tests.conftest import WEBHOOK_SECRETS, load_fixture, wait_until
from tests.unmapped import assert_kept_unmapped
from worker.core.db import get_engine
from worker.core.models import Call

SECRET = WEBHOOK_SECRETS["kazoo"]
# What the admin pastes as the hook's `uri`: the secret travels as the `token` parameter.
HOOK_URI = f"/webhooks/kazoo?token={SECRET}"
OWNER = "d860229e722bf8f738737365b0b1e333"
COMPANY_DID = "+33187654321"
# The fixtures' call ids and numbers, swapped per test so calls never collide.
IN_A = "SD4kq0b01-3e1f0c7a9d2b4e6f8a0c1d3e5f7a9b2c-06a91u0"
IN_B = "af1e1e12f1bcf519a96f2235ab8eeec4"
OUT_A = "MjY4ZDA5NmQ3YzQ3ZWE0MzE4NmM1ZmI3NDk2NTMwZjI"
OUT_B = "3b6e2d9c4f8a4b1e9d0c7a5f2e1b8c6d"
IN_CUSTOMER = "645218790"  # +33 6 45 21 87 90 (written %2B33645218790 in form bodies)
OUT_CUSTOMER = "645218791"  # dialled 0645218791, E.164 +33645218791

Delivery = tuple[str, str]  # (fixture name, body with this test's ids and numbers)


def delivery(name: str, swaps: dict[str, str]) -> Delivery:
    text = load_fixture("kazoo", name).decode()
    for old, new in swaps.items():
        text = text.replace(old, new)
    return name, text


def send(client, item: Delivery):  # type: ignore[no-untyped-def]
    """Deliver as KAZOO does for the fixture's format: form POST, JSON POST or GET."""
    name, text = item
    if name.endswith(".form"):
        return client.post(HOOK_URI, data=text, content_type="application/x-www-form-urlencoded")
    if name.endswith(".json"):
        return client.post(HOOK_URI, data=text, content_type="application/json")
    # A GET hook's URI must end with "&": KAZOO appends "?<payload>" to it.
    return client.get(f"{HOOK_URI}&?{text}")


def deliver_shuffled(client, items: list[Delivery], seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    batch = items + rng.sample(items, 2)  # two deliveries repeated
    rng.shuffle(batch)
    for item in batch:
        response = send(client, item)
        # KAZOO counts anything but 200 as a failure (and disables the hook after a few).
        assert response.status_code == 200, (item[0], response.json)
        assert response.json["status"] in ("accepted", "duplicate")


def calls_for(hubspot, number: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        c
        for c in hubspot.calls()
        if number
        in (c["properties"].get("hs_call_to_number"), c["properties"].get("hs_call_from_number"))
    ]


def logged_as(hubspot, number: str, expected: dict[str, str]):  # type: ignore[no-untyped-def]
    """The one HubSpot call for `number` once it shows `expected` (later legs update it)."""
    found = calls_for(hubspot, number)
    if len(found) == 1 and all(found[0]["properties"].get(k) == v for k, v in expected.items()):
        return found[0]
    return None


def call_row(call_id: str) -> Call | None:
    with Session(get_engine()) as session:
        return session.exec(select(Call).where(Call.platform_call_id == call_id)).first()


def barrier(client, hubspot, tag: str) -> None:  # type: ignore[no-untyped-def]
    """Send a fresh one-event call and wait for it: what was queued before has been handled."""
    digits = "6" + str(zlib.crc32(tag.encode()) % 10**8).zfill(8)  # a valid French mobile
    item = delivery(
        "channel_destroy__inbound_customer_leg.form",
        {IN_A: f"barrier-kazoo-{tag}", IN_CUSTOMER: digits},
    )
    assert send(client, item).status_code == 200
    wait_until(lambda: calls_for(hubspot, f"+33{digits}"), timeout=60)


def test_inbound_answered_call_is_logged_once_on_the_caller(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Marie", lastname="Dupont", phone="06 45 21 90 01")
    a, b = "SDe2e0001-inbound-answered-06a91u0", "e2e0001inboundansweredagentleg01"
    swaps = {IN_A: a, IN_B: b, IN_CUSTOMER: "645219001"}
    legs = [
        # The customer leg's creation comes from a GET hook, the rest as form POSTs.
        "channel_create__inbound_customer_leg.query",
        "channel_create__inbound_agent_leg.form",
        "channel_answer__inbound_agent_leg.form",
        "channel_answer__inbound_customer_leg.form",
        "channel_bridge__inbound_customer_leg.form",
        "channel_destroy__inbound_agent_leg.form",
        "channel_destroy__inbound_customer_leg.form",
    ]
    deliver_shuffled(client, [delivery(n, swaps) for n in legs], seed=1)

    expected = {
        "hs_call_direction": "INBOUND",
        "hs_call_from_number": "+33645219001",
        "hs_call_to_number": COMPANY_DID,
        "hs_call_duration": "95000",  # billing_seconds: the talk time
        "hs_call_status": "COMPLETED",
    }
    call = wait_until(lambda: logged_as(hubspot, "+33645219001", expected), timeout=60)
    assert call["associations"]["contacts"] == [contact_id]
    barrier(client, hubspot, "inbound-answered")
    assert len(calls_for(hubspot, "+33645219001")) == 1
    row = call_row(a)
    assert row is not None and row.agent == OWNER  # from the agent's device leg
    leg = call_row(b)
    assert leg is not None and leg.merged_into == row.id


def test_outbound_answered_call_is_logged_once_on_the_callee(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Paul", lastname="Martin", phone="06 45 21 90 02")
    a, b = "e2e0002OutboundAnsweredUserLeg0000000000001", "e2e0002outboundansweredcarrier01"
    swaps = {OUT_A: a, OUT_B: b, OUT_CUSTOMER: "645219002"}
    legs = [
        "channel_create__outbound_user_leg.json",
        "channel_create__outbound_carrier_leg.json",
        "channel_answer__outbound_carrier_leg.json",
        "channel_answer__outbound_user_leg.json",
        "channel_destroy__outbound_carrier_leg.json",
        "channel_destroy__outbound_user_leg.json",
    ]
    deliver_shuffled(client, [delivery(n, swaps) for n in legs], seed=2)

    expected = {
        "hs_call_direction": "OUTBOUND",
        # The user dialled 0645219002; the carrier leg shows the caller ID the customer saw.
        "hs_call_to_number": "+33645219002",
        "hs_call_from_number": COMPANY_DID,
        "hs_call_duration": "42000",
        "hs_call_status": "COMPLETED",
    }
    call = wait_until(lambda: logged_as(hubspot, "+33645219002", expected), timeout=60)
    assert call["associations"]["contacts"] == [contact_id]
    barrier(client, hubspot, "outbound-answered")
    assert len(calls_for(hubspot, "+33645219002")) == 1
    row = call_row(a)
    assert row is not None and row.agent == OWNER


def test_missed_inbound_call_is_logged_once_as_no_answer(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Luc", lastname="Bernard", phone="06 45 21 90 03")
    a, b = "SDe2e0003-inbound-missed-06a91u0", "e2e0003inboundmissedagentleg0001"
    swaps = {IN_A: a, IN_B: b, IN_CUSTOMER: "645219003"}
    legs = [
        "channel_create__inbound_customer_leg.form",
        "channel_create__inbound_agent_leg.form",
        "channel_destroy__inbound_missed_agent_leg.form",
        "channel_destroy__inbound_missed_customer_leg.form",
    ]
    deliver_shuffled(client, [delivery(n, swaps) for n in legs], seed=3)

    expected = {
        "hs_call_direction": "INBOUND",
        "hs_call_from_number": "+33645219003",
        "hs_call_to_number": COMPANY_DID,
        "hs_call_duration": "0",
        "hs_call_status": "NO_ANSWER",
    }
    call = wait_until(lambda: logged_as(hubspot, "+33645219003", expected), timeout=60)
    assert call["associations"]["contacts"] == [contact_id]
    barrier(client, hubspot, "inbound-missed")
    assert len(calls_for(hubspot, "+33645219003")) == 1
    row = call_row(a)
    assert (
        row is not None and row.outcome == "no_answer" and row.hangup_cause == "ORIGINATOR_CANCEL"
    )


# --- the receiver's answers to KAZOO --------------------------------------------------------


def test_wrong_or_missing_token_is_refused_401(client) -> None:  # type: ignore[no-untyped-def]
    body = load_fixture("kazoo", "channel_create__inbound_customer_leg.form")
    form = "application/x-www-form-urlencoded"
    wrong = client.post("/webhooks/kazoo?token=not-the-secret", data=body, content_type=form)
    assert wrong.status_code == 401 and wrong.json["reason"] == "invalid credentials"
    missing = client.post("/webhooks/kazoo", data=body, content_type=form)
    assert missing.status_code == 401
    assert missing.json["reason"] == "missing credentials: expected query parameter 'token'"
    # A GET hook whose URI does not end with "&": KAZOO's second "?" glues the payload to the
    # token, which then no longer matches.
    query = load_fixture("kazoo", "channel_create__inbound_customer_leg.query").decode()
    glued = client.get(f"{HOOK_URI}?{query}")
    assert glued.status_code == 401


def test_unknown_event_type_is_kept_and_answered_200(client) -> None:  # type: ignore[no-untyped-def]
    # KAZOO disables a hook after 6 non-200 answers in 60 s: an event type callhook does not
    # know must never count as one.
    text = load_fixture("kazoo", "channel_create__sample.json").decode()
    text = text.replace('"channel_create"', '"channel_hold"')
    response = client.post(HOOK_URI, data=text, content_type="application/json")
    assert_kept_unmapped(response, "no event rule matches this payload")


def test_known_ignored_payloads_answer_200_ignored(client) -> None:  # type: ignore[no-untyped-def]
    for name in ("object__doc_edited.json", "parking__park_parked.json"):
        response = send(client, delivery(name, {}))
        assert response.status_code == 200, response.json
        assert response.json["status"] == "ignored" and response.json["reason"]
    loopback = send(client, delivery("channel_create__loopback_inbound_leg.form", {}))
    assert loopback.status_code == 200 and loopback.json["status"] == "ignored"


def test_accepted_duplicate_and_ignored_all_answer_exactly_200(client) -> None:  # type: ignore[no-untyped-def]
    # KAZOO 4.3 counts only 200 as success (webhooks_util:handle_resp/5): not 201, 202 or 204.
    item = delivery("channel_create__outbound_user_leg.json", {OUT_A: "e2e0004-status-codes"})
    first, again = send(client, item), send(client, item)
    ignored = send(client, delivery("notifications__missed_call.json", {}))
    assert [r.status_code for r in (first, again, ignored)] == [200, 200, 200]
    assert [r.json["status"] for r in (first, again, ignored)] == [
        "accepted",
        "duplicate",
        "ignored",
    ]
