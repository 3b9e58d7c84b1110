"""The console's calls list and call story, as an operator uses them.

Real Kavkom payloads go through the webhook route, the real Celery worker folds them and
writes them to the fake HubSpot over HTTP; the pages are then read as an operator would:
is the call there, logged, with its HubSpot link; do the filters narrow the list; does the
story say why a call is (not) in HubSpot, with every delivery and attempt, and never a
secret. Call rows are written directly only where the webhook path cannot make them
(a merged leg's redirect) or would be slow for nothing (the 50-row pages).
"""

from __future__ import annotations

import html as entities
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlmodel import Session, select

from tests.conftest import KAVKOM_SECRET, TOKEN, Environment, load_fixture, wait_until
from tests.console_sign_in import signed_in_client
from worker.core.db import get_engine, session_scope
from worker.core.models import Call, CallPop, CrmStatus, DialAttempt, DryRunRequest, utcnow

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}
PORTAL = "4242"


class Rows(HTMLParser):
    """The calls table's body rows: each cell's text and each row's links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._in_body = False
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append({"cells": [], "links": []})
        elif self._in_body and tag == "td":
            self._cell = []
        elif self._in_body and tag == "a" and self.rows:
            self.rows[-1]["links"].append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def app(stack: dict[str, Any], hubspot: Any) -> Iterator[Any]:
    """The receiver app with a known HubSpot portal (record links), the fake HubSpot clean."""
    from webhook_receiver.web import create_app

    hubspot.reset()
    environment = Environment()
    environment.set({"HUBSPOT_PORTAL_ID": PORTAL})
    yield create_app({"TESTING": True})
    environment.restore()


@pytest.fixture
def ops(app: Any) -> Any:
    return signed_in_client(app)


def cdr(call_id: str, number: str, *, agent: str = "1001", **extra: Any) -> dict[str, Any]:
    """Kavkom's documented CDR, for one call of ours (started two minutes ago)."""
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload.update(
        callUuid=call_id,
        number=number,
        createdEpoch=int(time.time()) - 130,
        presenceId=f"{agent}@contact.example.kavkom.com",
        **extra,
    )
    return payload


def post(client: Any, payload: dict[str, Any], query: str = "") -> None:
    answer = client.post(f"/webhooks/kavkom{query}", json=payload, headers=AUTH)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def settled(call_id: str, *states: str) -> Call:
    """The call row once the worker has left it in one of `states`."""

    def row() -> Call | None:
        with Session(get_engine()) as session:
            call = session.exec(select(Call).where(Call.platform_call_id == call_id)).first()
            return call if call is not None and call.crm_status in states else None

    return wait_until(row, timeout=40)


def rows(ops: Any, query: str = "") -> list[dict[str, Any]]:
    answer = ops.get(f"/admin/calls{query}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return Rows(answer.get_data(as_text=True)).rows


def story_link(call: Call | int) -> str:
    return f"/admin/calls/{call if isinstance(call, int) else call.id}"


def listed(found: list[dict[str, Any]], call: Call | int) -> bool:
    """Whether the list's rows include this call (by its story link)."""
    return any(story_link(call) in row["links"] for row in found)


def test_pages_refuse_anyone_not_signed_in(app: Any) -> None:
    client = app.test_client()
    assert client.get("/admin/calls").status_code == 401
    assert client.get("/admin/calls/1").status_code == 401
    page = client.get("/admin/calls", headers={"Accept": "text/html"})
    assert page.status_code == 401 and "callhook admin link" in page.get_data(as_text=True)


def test_logged_and_failed_calls_are_listed_with_their_status_and_filters_narrow(
    ops: Any, hubspot: Any
) -> None:
    hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 12 34 56 11")
    post(ops, cdr("console-logged", "33612345611", agent="1001"))
    logged = settled("console-logged", CrmStatus.SYNCED)
    # HubSpot refuses the next call record outright (a validation error): the call fails.
    hubspot.fail_next(1, 400, path_prefix="/crm/v3/objects/calls")
    post(ops, cdr("console-failed", "33612345622", agent="1002"))
    failed = settled("console-failed", CrmStatus.FAILED)

    everything = rows(ops)
    (row,) = [r for r in everything if story_link(logged) in r["links"]]
    assert "logged" in row["cells"] and "Ada Lovelace" in row["cells"]
    assert "+33 6 12 34 56 11" in row["cells"] and "2:00" in row["cells"]
    assert f"https://app.hubspot.com/contacts/{PORTAL}/record/0-48/{logged.crm_id}" in row["links"]
    (bad,) = [r for r in everything if story_link(failed) in r["links"]]
    assert "failed" in bad["cells"]

    today = datetime.now(UTC).date()
    narrowed = {
        "?platform=kavkom": (True, True),
        "?platform=kwebbl": (False, False),
        "?direction=outbound": (True, True),
        "?direction=inbound": (False, False),
        "?number=06+12+34+56+11": (True, False),  # typed nationally, stored as E.164
        "?number=%2B33612345622": (False, True),
        "?number=0033-6-12-34-56-11": (True, False),
        "?agent=100": (True, True),
        "?agent=1002": (False, True),
        "?status=logged": (True, False),
        "?status=failed": (False, True),
        "?status=pending": (False, False),
        "?status=not_logged": (False, False),
        f"?from={today}&to={today}": (True, True),
        f"?to={today - timedelta(days=1)}": (False, False),
        f"?from={today + timedelta(days=1)}": (False, False),
        f"?status=logged&number=0612345611&from={today}": (True, False),
    }
    for query, (want_logged, want_failed) in narrowed.items():
        found = rows(ops, query)
        assert (listed(found, logged), listed(found, failed)) == (want_logged, want_failed), query


def test_story_of_a_logged_call_shows_deliveries_events_attempt_and_contact(
    ops: Any, hubspot: Any
) -> None:
    contact = hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 12 34 56 33")
    # Two deliveries of one call: the live WebSocket's ringing message, then the CDR.
    ringing = json.loads(load_fixture("kavkom", "call__ringing_inbound.json"))
    ringing["data"].update(callUuid="console-story", number="33612345633",
                           createdEpoch=int(time.time()) - 130)  # fmt: skip
    post(ops, ringing)
    post(ops, cdr("console-story", "33612345633", direction="inbound"))
    call = settled("console-story", CrmStatus.SYNCED)

    page = ops.get(story_link(call))
    assert page.status_code == 200
    html = entities.unescape(page.get_data(as_text=True))
    verdict = html.split('class="verdict', 1)[1].split("</section>", 1)[0]
    assert f"Logged in HubSpot as call {call.crm_id} on contact Ada Lovelace" in verdict
    assert "matched by number +33 6 12 34 56 33" in verdict
    assert html.count("Delivery #") == 2  # both deliveries, each with its canonical event
    assert "Canonical event 1: ringing" in html and "Canonical event 1: cdr" in html
    assert '"external_number": "+33612345633"' in html
    assert "HubSpot create" in html
    assert f"https://app.hubspot.com/contacts/{PORTAL}/record/0-48/{call.crm_id}" in html
    assert f"https://app.hubspot.com/contacts/{PORTAL}/record/0-1/{contact}" in html
    assert "<code>console-story</code>" in html  # the platform call id
    # Chronological: the deliveries come before the attempts they caused.
    assert html.index("Canonical event 1: ringing") < html.index("Canonical event 1: cdr")
    assert html.index("Canonical event 1: cdr") < html.index("HubSpot create")


def test_story_of_a_failed_call_says_why_and_where_to_retry(ops: Any, hubspot: Any) -> None:
    hubspot.fail_next(1, 400, path_prefix="/crm/v3/objects/calls")
    post(ops, cdr("console-refused", "33612345644"))
    call = settled("console-refused", CrmStatus.FAILED)
    assert (
        not [  # really not in HubSpot
            c
            for c in hubspot.calls()
            if c["properties"].get("hs_call_to_number") == "+33612345644"
            or c["properties"].get("hs_call_from_number") == "+33612345644"
        ]
    )

    html = entities.unescape(ops.get(story_link(call)).get_data(as_text=True))
    verdict = html.split('class="verdict', 1)[1].split("</section>", 1)[0]
    assert "Failed: " in verdict and "retry it from" in verdict and "Problems" in verdict
    assert "scripted failure 400" in verdict  # HubSpot's own words, as stored in crm_error
    attempt = html.split("HubSpot create", 1)[1].split("</li>", 1)[0]
    assert "failed" in attempt and "400" in attempt and "scripted failure 400" in attempt


def test_story_never_shows_a_secret_from_a_delivery(ops: Any, hubspot: Any) -> None:
    query_secret, body_secret = "query-secret-0123456789", "body-secret-9876543210"
    payload = cdr(
        "console-redact",
        "33612345655",
        api_key=body_secret,
        Authorization="Bearer another-body-secret-42",
        relay_note=f"forwarded with {KAVKOM_SECRET} and {TOKEN}",
    )
    post(ops, payload, query=f"?access_token={query_secret}&source=relay")
    call = settled("console-redact", CrmStatus.SYNCED)

    html = entities.unescape(ops.get(story_link(call)).get_data(as_text=True))
    assert "[redacted]" in html
    assert "source=relay" in html  # the rest of the query is shown
    for secret in (query_secret, body_secret, "another-body-secret-42", KAVKOM_SECRET, TOKEN):
        assert secret not in html, secret
    assert "forwarded with [redacted] and [redacted]" in html


def test_bad_filters_get_a_400_with_the_reason(ops: Any) -> None:
    for query, reason in {
        "from=abc": "from must be a date written YYYY-MM-DD",
        "to=2026-02-30": "to must be a date",
        "from=2026-03-02&to=2026-03-01": "from is after to",
        "direction=sideways": "direction must be",
        "status=lost": "status must be one of",
        "platform=nope": "unknown platform",
        "number=abc": "number must be",
        "before=-5": "before must be a call id",
        "agent=" + "x" * 201: "agent is longer than 200",
    }.items():
        answer = ops.get(f"/admin/calls?{query}")
        assert answer.status_code == 400, query
        assert reason in answer.get_data(as_text=True), query
    assert ops.get("/admin/calls/999999999").status_code == 404


def add_call(call_id: str, *, agent: str, merged_into: int | None = None) -> int:
    with session_scope() as session:
        call = Call(
            platform="kavkom", platform_call_id=call_id, stage="cdr", direction="inbound",
            external_number="+33612345699", agent=agent, started_at=datetime.now(UTC),
            ended=True, crm_status=CrmStatus.MERGED if merged_into else CrmStatus.PENDING,
            merged_into=merged_into,
        )  # fmt: skip
        session.add(call)
        session.flush()
        assert call.id is not None
        return call.id


def test_pages_of_fifty_follow_older_links_without_gaps_or_repeats(ops: Any) -> None:
    made = [add_call(f"console-page-{i}", agent="pager-7") for i in range(57)]
    first = ops.get("/admin/calls?agent=pager-7").get_data(as_text=True)
    seen = [link for row in Rows(first).rows for link in row["links"] if "/admin/calls/" in link]
    assert len(seen) == 50
    older = first.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    assert "agent=pager-7" in older and "before=" in older
    second = ops.get(older.replace("&amp;", "&")).get_data(as_text=True)
    seen += [link for row in Rows(second).rows for link in row["links"] if "/admin/calls/" in link]
    assert seen == [f"/admin/calls/{i}" for i in sorted(made, reverse=True)]
    assert 'rel="next"' not in second


def test_a_merged_leg_redirects_to_its_call_with_a_note(ops: Any) -> None:
    root = add_call("console-root", agent="legs")
    leg = add_call("console-leg", agent="legs", merged_into=root)
    answer = ops.get(f"/admin/calls/{leg}")
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/admin/calls/{root}")
    landed = ops.get(answer.headers["Location"]).get_data(as_text=True)
    assert f"Call #{leg} was a leg of this call" in landed
    assert "console-leg" in landed  # listed among the merged legs
    assert listed(rows(ops, "?agent=legs"), root) and not listed(rows(ops, "?agent=legs"), leg)


def test_story_of_a_call_still_ringing_says_it_has_not_ended(ops: Any) -> None:
    ringing = json.loads(load_fixture("kavkom", "call__ringing_inbound.json"))
    ringing["data"].update(callUuid="console-ringing", number="33612345666",
                           createdEpoch=int(time.time()))  # fmt: skip
    post(ops, ringing)
    call = settled("console-ringing", CrmStatus.WAITING)
    wait_until(lambda: "Canonical event 1: ringing" in ops.get(story_link(call)).get_data(True))
    html = entities.unescape(ops.get(story_link(call)).get_data(as_text=True))
    verdict = html.split('class="verdict', 1)[1].split("</section>", 1)[0]
    assert "Not logged yet: the call has not ended (last event ringing" in verdict
    assert listed(rows(ops, "?status=pending&number=33612345666"), call)


def test_story_shows_pops_click_to_call_and_dry_run_requests(ops: Any) -> None:
    """Rows as the pops, the dialer and the dry-run CRM write them (this stack sends to
    HubSpot, so a dry-run call is written directly)."""
    call_id = add_call("console-dry", agent="1001")
    with session_scope() as session:
        call = session.get(Call, call_id)
        assert call is not None
        call.crm_status, call.crm_id, call.ended_at = CrmStatus.DRY_RUN, "dry-run-7", utcnow()
        session.add(call)
        session.add(CallPop(call_id=call_id, agent_email="alice@example.com", contact_name="Ada"))
        session.add(DialAttempt(agent_email="alice@example.com", requested="06 12 34 56 99",
                                destination="+33612345699", platform="kavkom", result="placed",
                                platform_call_id="console-dry"))  # fmt: skip
        body = {"properties": {"hs_call_title": "Inbound call"}}
        session.add(
            DryRunRequest(call_id=call_id, method="POST", path="/crm/v3/objects/calls", body=body)
        )
    html = entities.unescape(ops.get(f"/admin/calls/{call_id}").get_data(as_text=True))
    verdict = html.split('class="verdict', 1)[1].split("</section>", 1)[0]
    assert "Dry run: recorded, not sent (1 HubSpot request recorded)" in verdict
    assert "Card shown to alice@example.com" in html and "Contact shown: Ada" in html
    assert "Click-to-call by alice@example.com" in html and "placed" in html
    assert "Dry run: <code>POST /crm/v3/objects/calls</code>" in html
    assert '"hs_call_title": "Inbound call"' in html
    assert "record/0-48/dry-run-7" not in html  # a dry-run id is no HubSpot record
    assert listed(rows(ops, "?status=dry_run&agent=1001"), call_id)
