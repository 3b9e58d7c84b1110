"""After the call: the agent's outcome and note, written to the call's one HubSpot record.

End to end: Kavkom webhooks → real worker → fake HubSpot over HTTP, and the agent's
``POST /agent/calls/<id>/wrap-up``. What a sales team checks in HubSpot: one call record,
carrying the agent's outcome (hs_call_disposition) and note (appended to hs_call_body,
escaped), whether the agent wrote them before or after callhook logged the call.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from tests.conftest import wait_until
from tests.test_call_logging_e2e import barrier, call_row, calls_for, post
from tests.test_screen_pop import live
from worker.core.agent_links import create_link
from worker.core.db import get_engine
from worker.core.models import Call, CallPop, CrmStatus, CrmSyncAttempt, utcnow

CONNECTED = "f240bbac-87c9-4f6e-bf70-924b57d47db7"
VOICEMAIL = "b2cf5968-551e-4856-9783-52b3da59a7d0"
WRONG_NUMBER = "17b47fee-58de-441e-a44c-c6300d46f273"
LIVE_MESSAGE = "a4c4c377-d246-4b32-a13b-75a56a4cd0ff"


def now_live(call_id: str, state: str, extension: str, number: str) -> dict[str, Any]:
    """A live Kavkom event of a call that starts now (the fixture's epoch is from 2024)."""
    return {**live(call_id, state, extension, number), "createdEpoch": int(time.time())}


def agent(email: str) -> dict[str, str]:
    return {"X-Callhook-Agent": create_link(email)}


def ended_row(call_id: str):  # type: ignore[no-untyped-def]
    """The call's row once the worker folded its end."""
    return wait_until(lambda: (r := call_row(call_id)) and r.ended and r, timeout=30)


def shown_to(platform_call_id: str) -> set[str]:
    """Whom the call's card was shown to (the worker pops cards while the call rings; a
    ringing event folded after the end pops nothing)."""
    with Session(get_engine()) as session:
        query = select(CallPop.agent_email).join(Call, Call.id == CallPop.call_id)
        return set(session.exec(query.where(Call.platform_call_id == platform_call_id)).all())


def failed_attempts(call_id: int) -> list[CrmSyncAttempt]:
    with Session(get_engine()) as session:
        query = select(CrmSyncAttempt).where(CrmSyncAttempt.call_id == call_id, ~CrmSyncAttempt.ok)
        return list(session.exec(query).all())


def patches_of(hubspot, crm_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        r
        for r in hubspot.requests()
        if r["method"] == "PATCH" and r["path"] == f"/crm/v3/objects/calls/{crm_id}"
    ]


def test_a_wrap_up_after_logging_updates_the_same_record_once(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 12 34 57 01")
    for state in ("ringing", "active", "finished"):
        post(client, now_live("wrap-after", state, "1001", "33612345701"))
    (logged,) = wait_until(lambda: calls_for(hubspot, "+33612345701"), timeout=30)
    row = wait_until(
        lambda: (r := call_row("wrap-after")) and r.crm_status == CrmStatus.SYNCED and r,
        timeout=30,
    )
    barrier(client, hubspot, "wrap-after-logged")
    before = len(patches_of(hubspot, logged["id"]))

    note = "Wants a quote <b>by Friday</b>\r\n& a call back"
    saved = client.post(f"/agent/calls/{row.id}/wrap-up", headers=agent("alice@example.com"),
                        json={"outcome": VOICEMAIL, "note": note})  # fmt: skip
    assert saved.status_code == 200, saved.json
    assert saved.json["changed"] is True
    assert saved.json["wrap_up"]["outcome_label"] == "Left voicemail"
    assert saved.json["wrap_up"]["by"] == "alice@example.com"

    def carried() -> dict[str, Any] | None:
        (call,) = calls_for(hubspot, "+33612345701")
        props = call["properties"]
        return props if props.get("hs_call_disposition") == VOICEMAIL else None

    props = wait_until(carried, timeout=30)
    body = props["hs_call_body"]
    # Appended to what the template wrote, escaped: HubSpot shows the body as HTML.
    assert body.startswith("Inbound call via Kavkom, extension 1001.")
    assert (
        "<p><strong>Note from Alice Martin:</strong><br>\n"
        "Wants a quote &lt;b&gt;by Friday&lt;/b&gt;<br>\n&amp; a call back</p>"
    ) in body
    barrier(client, hubspot, "wrap-after-updated")
    assert len(calls_for(hubspot, "+33612345701")) == 1
    assert len(patches_of(hubspot, logged["id"])) == before + 1

    # The same wrap-up saved again: nothing new to send, no request at all.
    again = client.post(f"/agent/calls/{row.id}/wrap-up", headers=agent("alice@example.com"),
                        json={"outcome": VOICEMAIL, "note": note})  # fmt: skip
    assert again.status_code == 200 and again.json["changed"] is False
    barrier(client, hubspot, "wrap-after-again")
    assert len(patches_of(hubspot, logged["id"])) == before + 1


def test_a_wrap_up_before_logging_goes_into_the_one_record(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    hubspot.add_contact(firstname="Grace", lastname="Hopper", phone="06 12 34 57 02")
    hubspot.set_down(503)  # the call cannot be logged yet
    try:
        for state in ("ringing", "active", "finished"):
            post(client, now_live("wrap-before", state, "1001", "33612345702"))
        row = ended_row("wrap-before")
        saved_at = utcnow()
        wrap_up = {"outcome": LIVE_MESSAGE, "note": "Signed for 12 seats"}
        saved = client.post(f"/agent/calls/{row.id}/wrap-up", headers=agent("alice@example.com"),
                            json=wrap_up)  # fmt: skip
        assert saved.status_code == 200, saved.json
        # A sync that began before the wrap-up was saved fails while HubSpot is down; the
        # next one begins after it (one sync at a time holds the call's lease).
        wait_until(lambda: [a for a in failed_attempts(row.id) if a.at > saved_at], timeout=30)
        assert calls_for(hubspot, "+33612345702") == []
    finally:
        hubspot.set_down(None)
    (call,) = wait_until(lambda: calls_for(hubspot, "+33612345702"), timeout=90)
    props = call["properties"]
    assert props["hs_call_disposition"] == LIVE_MESSAGE
    assert "Note from Alice Martin:</strong><br>\nSigned for 12 seats</p>" in props["hs_call_body"]
    barrier(client, hubspot, "wrap-before")
    assert len(calls_for(hubspot, "+33612345702")) == 1
    assert patches_of(hubspot, call["id"]) == []  # created with it: no update needed


def test_the_agent_who_had_the_call_writes_it_and_nobody_else(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    # A ring group: both phones ring, Bob picks up.
    post(client, now_live("wrap-group", "ringing", "1001", "33612345703"))
    post(client, now_live("wrap-group", "ringing", "1002", "33612345703"))
    post(client, now_live("wrap-group", "active", "1002", "33612345703"))
    post(client, now_live("wrap-group", "finished", "1002", "33612345703"))
    # Every event folded, in whatever order the worker took them: Bob is the one who answered.
    row = wait_until(
        lambda: (r := call_row("wrap-group")) and r.ended and r.agent == "1002" and r, timeout=30
    )
    url = f"/agent/calls/{row.id}/wrap-up"
    refused = client.post(url, headers=agent("alice@example.com"), json={"note": "mine?"})
    assert refused.status_code == 403
    assert refused.json == {
        "error": "not_your_call",
        "reason": "Bob Durand had this call: only they may wrap it up",
    }
    taken = client.post(url, headers=agent("bob@example.com"), json={"note": "ok"})
    assert taken.status_code == 200

    # Nobody picks up: the call is everyone's it rang for, once their cards were shown.
    post(client, now_live("wrap-missed", "ringing", "1001", "33612345704"))
    post(client, now_live("wrap-missed", "ringing", "1002", "33612345704"))
    wait_until(lambda: shown_to("wrap-missed") == {"alice@example.com", "bob@example.com"})
    post(client, now_live("wrap-missed", "finished", "1001", "33612345704"))
    row = ended_row("wrap-missed")
    url = f"/agent/calls/{row.id}/wrap-up"
    for email in ("alice@example.com", "bob@example.com"):
        answer = client.post(url, headers=agent(email), json={"outcome": WRONG_NUMBER})
        assert answer.status_code == 200, answer.json

    # A call that rang for Alice only is not Bob's.
    post(client, now_live("wrap-alice", "ringing", "1001", "33612345705"))
    post(client, now_live("wrap-alice", "finished", "1001", "33612345705"))
    row = ended_row("wrap-alice")
    url = f"/agent/calls/{row.id}/wrap-up"
    refused = client.post(url, headers=agent("bob@example.com"), json={"note": "x"})
    assert refused.status_code == 403 and refused.json["error"] == "not_your_call"


def test_bad_wrap_ups_get_a_4xx_with_the_reason(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    post(client, now_live("wrap-bad", "ringing", "1001", "33612345706"))
    row = wait_until(lambda: call_row("wrap-bad"), timeout=30)
    url = f"/agent/calls/{row.id}/wrap-up"
    alice = agent("alice@example.com")

    early = client.post(url, headers=alice, json={"outcome": CONNECTED})
    assert (early.status_code, early.json["error"]) == (409, "not_ended")
    assert "still going on" in early.json["reason"]
    post(client, now_live("wrap-bad", "finished", "1001", "33612345706"))
    ended_row("wrap-bad")

    def refused(status: int, error: str, **kwargs: Any) -> str:
        answer = client.post(url, **{"headers": alice, **kwargs})
        assert answer.status_code == status, answer.json
        assert answer.json["error"] == error
        return str(answer.json["reason"])

    assert "personal callhook link" in refused(403, "forbidden", headers={}, json={"note": "x"})
    assert "JSON object" in refused(400, "bad_body", data="note=x")
    assert "JSON object" in refused(400, "bad_body", json=["note"])
    assert "Connected" in refused(400, "bad_outcome", json={"outcome": "great-call"})
    assert "string" in refused(400, "bad_field", json={"outcome": 3})
    assert "string" in refused(400, "bad_field", json={"note": {"text": "x"}})
    assert refused(400, "empty", json={"outcome": "", "note": "   "}) == (
        "choose an outcome or write a note"
    )
    assert "'note' is not valid text" in refused(400, "bad_field", data='{"note": "\\ud800"}',
                                       content_type="application/json")  # fmt: skip
    kept = client.post(url, headers=alice, json={"note": "a\x00b\x1b[31mc\nd"})
    assert kept.status_code == 200 and kept.json["wrap_up"]["note"] == "ab[31mc\nd"
    too_long = refused(400, "too_long", json={"note": "n" * 5001})
    assert "5001 characters long; at most 5000" in too_long
    assert client.post(url, headers=alice, json={"note": "n" * 5000}).status_code == 200

    missing = client.post("/agent/calls/999999/wrap-up", headers=alice, json={"note": "x"})
    assert (missing.status_code, missing.json["error"]) == (404, "no_such_call")
    huge = client.post(f"/agent/calls/{10**30}/wrap-up", headers=alice, json={"note": "x"})
    assert huge.status_code == 404


def test_the_agents_outcome_wins_and_the_note_is_text_in_hubspot(hubspot) -> None:  # type: ignore[no-untyped-def]
    """The adapter alone: what the record carries for a wrapped-up call."""
    from tests.test_hubspot_adapter import adapter, snapshot

    hubspot.reset()
    crm = adapter(hubspot)
    missed = snapshot("wrap-adapter", "+33612345707", outcome="no_answer", agent="1001",
                      agent_outcome=WRONG_NUMBER, agent_wrapped_by="bob@example.com",
                      agent_note='<img src=x onerror="alert(1)">\nline 2')  # fmt: skip
    result = crm.log_call(missed)
    # This module's worker may still be logging an earlier test's call: only this one counts.
    (call,) = [c for c in hubspot.calls() if c["id"] == result.crm_id]
    props = call["properties"]
    assert props["hs_call_disposition"] == WRONG_NUMBER  # not No answer, the platform's word
    assert props["hs_call_body"].endswith(
        "<p><strong>Note from Bob Durand:</strong><br>\n"
        "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;<br>\nline 2</p>"
    )
    # Without a wrap-up, the platform's outcome decides, and the body is the template's alone.
    plain = crm.log_call(snapshot("wrap-plain", "+33612345708", outcome="no_answer"))
    props = next(c for c in hubspot.calls() if c["id"] == plain.crm_id)["properties"]
    assert props["hs_call_disposition"] == "73a0d17f-1163-4015-bdd5-ec830791da20"
    assert "Note from" not in props["hs_call_body"]
    assert result.crm_id != plain.crm_id


# The client is the module's app; each example is one request, independent of the others.
QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=QUIET)  # fmt: skip
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["outcome", "note", "x"]) | st.text(max_size=8), inner, max_size=3
            )
        ),
        max_leaves=8,
    ),
    call_id=st.integers(min_value=0, max_value=2**40),
)
def test_any_wrap_up_body_gets_an_answer_never_a_5xx(client, body: Any, call_id: int) -> None:  # type: ignore[no-untyped-def]
    answer = client.post(f"/agent/calls/{call_id}/wrap-up", json=body,
                         headers={"X-Callhook-Agent": fuzz_token()})  # fmt: skip
    assert answer.status_code in (200, 400, 403, 404, 409), answer.data
    if answer.status_code != 200:
        assert answer.json["reason"]


_fuzz_token: list[str] = []


def fuzz_token() -> str:
    """One agent link for the whole fuzz (made when the test's database exists)."""
    if not _fuzz_token:
        _fuzz_token.append(create_link("alice@example.com"))
    return _fuzz_token[0]


def test_the_outcomes_offered_come_from_the_crm_file() -> None:
    """`call.agent_outcomes` when given; else the outcomes of `call.disposition`, named as
    HubSpot names its defaults; a bad entry stops start-up with the reason."""
    import pytest
    from pydantic import ValidationError

    from worker.crm.hubspot_config import CallProperties

    shipped = CallProperties(
        disposition={"answered": CONNECTED, "no_answer": "73a0d17f-1163-4015-bdd5-ec830791da20",
                     "busy": "0b5d2c1e-custom"},
    )  # fmt: skip
    assert shipped.outcome_choices() == {
        CONNECTED: "Connected", "73a0d17f-1163-4015-bdd5-ec830791da20": "No answer",
        "0b5d2c1e-custom": "Busy",
    }  # fmt: skip
    chosen = CallProperties(agent_outcomes={WRONG_NUMBER: " Wrong number ", CONNECTED: "Reached"})
    assert list(chosen.outcome_choices().items()) == [
        (WRONG_NUMBER, "Wrong number"), (CONNECTED, "Reached"),
    ]  # fmt: skip
    with pytest.raises(ValidationError, match="HubSpot call outcome id"):
        CallProperties(agent_outcomes={"not an id!": "Connected"})
    with pytest.raises(ValidationError, match="a name agents read"):
        CallProperties(agent_outcomes={CONNECTED: ""})
