"""The console's problems page and mapping sandbox, as an operator uses them.

Deliveries the mapping cannot read are grouped by platform and reason; once the file is
fixed, Replay lands the call in HubSpot exactly once. A call HubSpot refused shows with
HubSpot's reason, and Retry, once HubSpot accepts again, logs it exactly once. The sandbox
shows what a payload becomes and stores nothing. Bodies never show a secret.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.conftest import KAVKOM_SECRET, ROOT, Environment, load_fixture, wait_until
from tests.console_sign_in import signed_in_client
from tests.unmapped import assert_kept_unmapped, stored
from worker.core.db import get_engine, session_scope
from worker.core.models import (
    Call,
    CrmStatus,
    CrmSyncAttempt,
    DryRunRequest,
    EventStatus,
    WebhookEvent,
)

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}
HTML = {"Accept": "text/html"}
TRANSFER_REASON = "cdr: direction: direction 'transfer' is not one of"


class Cells(HTMLParser):
    """Each body row of every table: its cells' text (th and td), and its links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._body = False
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._body = True
        elif self._body and tag == "tr":
            self.rows.append([])
        elif self._body and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._body = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def cdr(call_id: str, number: str, direction: str = "outbound") -> dict[str, Any]:
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload.update(callUuid=call_id, number=number, direction=direction)
    return payload


def hubspot_calls(hubspot: Any, number: str) -> list[dict[str, Any]]:
    return [c for c in hubspot.calls() if c["properties"].get("hs_call_to_number") == number]


def counts() -> tuple[int, int, int]:
    with Session(get_engine()) as session:
        return tuple(  # type: ignore[return-value]
            session.exec(select(sa.func.count()).select_from(model)).one()
            for model in (WebhookEvent, Call, DryRunRequest)
        )


def flashed(client: Any, answer: Any) -> str:
    """Follow a console action's redirect and return the page it lands on."""
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert answer.headers["Location"].startswith("/admin/problems")
    return client.get("/admin/problems").get_data(as_text=True)


def failed_rows(page: str) -> list[list[str]]:
    """The failed-syncs table's rows (the part of the page above the deliveries)."""
    return Cells(page.split('id="unmapped"', 1)[0]).rows


def group_section(page: str, reason_start: str) -> str:
    """The problems page's section of the group whose reason starts so (HTML-escaped)."""
    escaped = reason_start.replace("'", "&#39;")
    start = page.index(escaped)
    return page[page.rindex("<section", 0, start) : page.index("</section>", start)]


@pytest.fixture
def mappings_copy(stack: dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    """A MAPPINGS_DIR the test may edit, as an operator fixing a file would."""
    target = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", target)
    env = Environment()
    env.set({"MAPPINGS_DIR": str(target)})
    yield target
    env.restore()


@pytest.fixture
def app(stack: dict[str, Any], hubspot: Any) -> Any:
    from webhook_receiver.web import create_app

    hubspot.reset()
    return create_app({"TESTING": True})


def test_unmapped_deliveries_are_grouped_then_replayed_into_hubspot_once(  # type: ignore[no-untyped-def]
    mappings_copy: Path, hubspot
) -> None:
    from webhook_receiver.web import create_app

    hubspot.reset()
    app = create_app({"TESTING": True})
    webhooks = app.test_client()
    first = webhooks.post(
        "/webhooks/kavkom", json=cdr("pb-1", "33612340001", "transfer"), headers=AUTH
    )
    second = webhooks.post(
        "/webhooks/kavkom", json=cdr("pb-2", "33612340002", "transfer"), headers=AUTH
    )
    other = webhooks.post("/webhooks/kavkom", json={"event": "conference"}, headers=AUTH)
    one = assert_kept_unmapped(first, TRANSFER_REASON)
    two = assert_kept_unmapped(second, TRANSFER_REASON)
    assert_kept_unmapped(other, "no event rule matches this payload")

    console = signed_in_client(app)
    page = console.get("/admin/problems").get_data(as_text=True)
    group = group_section(page, TRANSFER_REASON)
    assert "kavkom" in group
    assert "<dt>Deliveries</dt>\n    <dd>2</dd>" in group
    assert "Replay all 2" in group
    assert f"#{one.id}" in group and f"#{two.id}" in group
    assert "pb-1" in group  # the redacted preview shows the body
    assert "no event rule matches this payload" not in group  # its own group
    assert "no event rule matches this payload" in page
    assert "Replay only after fixing the mapping" in page

    # Not fixed yet: the replay says so, and the delivery stays where it was.
    answer = console.post(f"/admin/events/{one.id}/replay", headers=HTML)
    assert f"event {one.id} still cannot be mapped" in flashed(console, answer)
    assert stored(one.id).status == EventStatus.UNMAPPED

    # The operator fixes the file; no restart: replay reads it again.
    path = mappings_copy / "kavkom.yaml"
    path.write_text(
        path.read_text().replace(
            "map: {inbound: inbound,", "map: {transfer: outbound, inbound: inbound,", 1
        )
    )
    answer = console.post(f"/admin/events/{one.id}/replay", headers=HTML)
    assert f"event {one.id} mapped to 1 event(s); queued" in flashed(console, answer)
    answer = console.post(
        "/admin/problems/replay",
        data={"platform": "kavkom", "reason": stored(two.id).error},
        headers=HTML,
    )
    assert "kavkom: replayed 1: 1 mapped and queued" in flashed(console, answer)

    for number in ("+33612340001", "+33612340002"):
        (call,) = wait_until(lambda n=number: hubspot_calls(hubspot, n), timeout=30)
        assert call["properties"]["hs_call_direction"] == "OUTBOUND"
    wait_until(lambda: stored(two.id).status == EventStatus.PROCESSED, timeout=30)
    # Exactly once: replaying again is refused, and nothing more reaches HubSpot.
    again = console.post(f"/admin/events/{one.id}/replay", headers=HTML)
    assert f"event {one.id} is processed" in flashed(console, again)
    time.sleep(2)
    assert len(hubspot_calls(hubspot, "+33612340001")) == 1
    assert len(hubspot_calls(hubspot, "+33612340002")) == 1
    assert TRANSFER_REASON.replace("'", "&#39;") not in console.get("/admin/problems").get_data(
        as_text=True
    )


def test_a_failed_sync_shows_its_reason_and_retry_logs_it_once(app, hubspot) -> None:  # type: ignore[no-untyped-def]
    hubspot.fail_next(1, 400, path_prefix="/crm/v3/objects/calls")
    webhooks = app.test_client()
    assert (
        webhooks.post(
            "/webhooks/kavkom", json=cdr("pb-fail", "33612340009"), headers=AUTH
        ).status_code
        == 200
    )

    def failed_call() -> Call | None:
        with Session(get_engine()) as session:
            call = session.exec(select(Call).where(Call.platform_call_id == "pb-fail")).first()
            return call if call is not None and call.crm_status == CrmStatus.FAILED else None

    call = wait_until(failed_call, timeout=30)
    assert hubspot_calls(hubspot, "+33612340009") == []

    console = signed_in_client(app)
    page = console.get("/admin/problems").get_data(as_text=True)
    (row,) = [r for r in failed_rows(page) if r[0] == f"#{call.id}"]
    assert row[2] == "kavkom" and row[3].startswith("+33 6 12 34 00 09")
    assert "HubSpot 400 VALIDATION_ERROR: scripted failure 400" in row[4]
    assert f'href="/admin/calls/{call.id}"' in page

    answer = console.post(f"/admin/calls/{call.id}/retry", headers=HTML)
    assert f"call {call.id} queued for a CRM sync" in flashed(console, answer)
    (logged,) = wait_until(lambda: hubspot_calls(hubspot, "+33612340009"), timeout=30)
    wait_until(lambda: not failed_call(), timeout=10)
    time.sleep(2)  # any duplicate sync would have landed by now
    assert [c["id"] for c in hubspot_calls(hubspot, "+33612340009")] == [logged["id"]]
    with Session(get_engine()) as session:
        assert session.get(Call, call.id).crm_status == CrmStatus.SYNCED  # type: ignore[union-attr]
    remaining = failed_rows(console.get("/admin/problems").get_data(as_text=True))
    assert f"#{call.id}" not in [r[0] for r in remaining]


def test_retry_refuses_what_it_cannot_do_with_a_reason(app) -> None:  # type: ignore[no-untyped-def]
    with session_scope() as session:
        live = Call(platform="kavkom", platform_call_id="pb-live", stage="answered")
        session.add(live)
        session.flush()
        live_id = live.id
    console = signed_in_client(app)
    missing = console.post("/admin/calls/999999/retry")
    assert (missing.status_code, missing.json["reason"]) == (404, "no call 999999")
    busy = console.post(f"/admin/calls/{live_id}/retry")
    assert (busy.status_code, busy.json["reason"]) == (409, f"call {live_id} has not ended yet")
    # A browser is sent back to the page with the reason.
    page = flashed(console, console.post(f"/admin/calls/{live_id}/retry", headers=HTML))
    assert f'class="flash error">call {live_id} has not ended yet' in page
    assert console.post("/admin/events/999999/replay").status_code == 404


def test_sandbox_shows_events_and_requests_and_stores_nothing(app, hubspot) -> None:  # type: ignore[no-untyped-def]
    console = signed_in_client(app)
    form = console.get("/admin/sandbox").get_data(as_text=True)
    assert '<option value="kavkom"' in form and 'name="payload"' in form
    before, requests_before = counts(), len(hubspot.requests())

    payload = load_fixture("kavkom", "cdr__outbound.json").decode()
    page = console.post(
        "/admin/sandbox", data={"platform": "kavkom", "fmt": "json", "payload": payload}
    ).get_data(as_text=True)
    assert "Mapped to 1 canonical event." in page
    assert "&#34;call_id&#34;: &#34;a1b2c3d4-...-ef1234567890&#34;" in page
    assert "&#34;external_number&#34;: &#34;+33612345678&#34;" in page
    assert "/crm/v3/objects/calls" in page and "hs_call_direction" in page

    garbage = console.post(
        "/admin/sandbox", data={"platform": "kavkom", "fmt": "json", "payload": "{not json"}
    ).get_data(as_text=True)
    assert "The mapping cannot read this payload: body is not valid JSON" in garbage
    as_form = console.post(
        "/admin/sandbox", data={"platform": "kavkom", "fmt": "form", "payload": "a=1"}
    ).get_data(as_text=True)
    assert "The mapping cannot read this payload: kavkom accepts json, not form" in as_form
    ignored = console.post(
        "/admin/sandbox", data={"platform": "kavkom", "fmt": "json", "payload": '{"event":"ping"}'}
    ).get_data(as_text=True)
    assert "Ignored: " in ignored

    assert counts() == before  # nothing stored: no event, no call, no dry-run request
    assert len(hubspot.requests()) == requests_before  # nothing sent


def test_sandbox_prefills_a_stored_delivery_without_its_secrets(app) -> None:  # type: ignore[no-untyped-def]
    body = cdr("pb-secret", "33612340011", "transfer")
    body.update(api_token="tok-7f3a9c1e55", note=f"copied {KAVKOM_SECRET} by mistake")
    answer = app.test_client().post("/webhooks/kavkom", json=body, headers=AUTH)
    row = assert_kept_unmapped(answer, TRANSFER_REASON)
    console = signed_in_client(app)

    problems = console.get("/admin/problems").get_data(as_text=True)
    assert "pb-secret" in problems
    sandbox = console.get(f"/admin/sandbox?event={row.id}").get_data(as_text=True)
    assert "pb-secret" in sandbox and "[hidden]" in sandbox
    assert '<option value="kavkom" selected' in sandbox
    assert (
        f"The mapping cannot read this payload: {TRANSFER_REASON}".replace("'", "&#39;") in sandbox
    )
    for page in (problems, sandbox):
        assert KAVKOM_SECRET not in page
        assert "tok-7f3a9c1e55" not in page


def test_pages_and_actions_need_a_signed_in_operator_on_this_site(app) -> None:  # type: ignore[no-untyped-def]
    anonymous = app.test_client()
    for path in ("/admin/problems", "/admin/sandbox"):
        assert anonymous.get(path).status_code == 401, path
    for path in (
        "/admin/calls/1/retry",
        "/admin/events/1/replay",
        "/admin/problems/replay",
        "/admin/problems/retry-all",
        "/admin/sandbox",
    ):
        assert anonymous.post(path).status_code == 401, path
    console = signed_in_client(app)
    evil = {"Origin": "https://evil.example"}
    for path in (
        "/admin/calls/1/retry",
        "/admin/events/1/replay",
        "/admin/problems/replay",
        "/admin/problems/retry-all",
        "/admin/sandbox",
    ):
        assert console.post(path, headers=evil).status_code == 403, path


def test_retry_all_queues_every_failed_call(app) -> None:  # type: ignore[no-untyped-def]
    ids = []
    with session_scope() as session:
        for n in (1, 2):
            call = Call(
                platform="kavkom",
                platform_call_id=f"pb-all-{n}",
                stage="ended",
                ended=True,
                crm_status=CrmStatus.FAILED,
                crm_error="HubSpot 401",
            )
            session.add(call)
            session.flush()
            ids.append(call.id)
    console = signed_in_client(app)
    page = console.get("/admin/problems").get_data(as_text=True)
    assert {f"#{i}" for i in ids} <= {r[0] for r in failed_rows(page)}
    page = flashed(console, console.post("/admin/problems/retry-all", headers=HTML))
    assert "failed call(s) queued for a CRM sync" in page

    # Each was queued: the worker tried each one again (whatever HubSpot makes of these
    # bare rows, which is why the page may list them as failed again by now).
    def attempted() -> bool:
        with Session(get_engine()) as session:
            tried = {
                a.call_id
                for a in session.exec(
                    select(CrmSyncAttempt).where(CrmSyncAttempt.call_id.in_(ids))  # type: ignore[union-attr]
                )
            }
        return tried == set(ids)

    wait_until(attempted, timeout=30)


def test_bodies_are_shown_without_secret_looking_values() -> None:
    from webhook_receiver.web.console.redacted import redacted_body

    shown = redacted_body(
        json.dumps({"call": {"auth_token": "t0k3n-value", "from": "+336"}, "apiKey": "k3y"}),
        ["s3cr3t-value"],
    )
    assert "t0k3n-value" not in shown and "k3y" not in shown and "+336" in shown
    form = redacted_body("token=abc123&from=%2B336&note=s3cr3t-value", ["s3cr3t-value"])
    assert "abc123" not in form and "s3cr3t-value" not in form and "from=%2B336" in form
    text = redacted_body("<xml>password: hunter2, user=bob</xml>", [])
    assert "hunter2" not in text and "user=bob" in text
