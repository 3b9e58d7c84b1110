"""A platform added as YAML alone: Dial 9 Connect, the example of docs/adding-a-platform.md.

`dial9.yaml` is not shipped in mappings/. As a user would, each test drops it into a copy
of mappings/, checks it with `callhook mappings check`, tries the vendor's own examples
(fixtures/, see fixtures/SOURCES.md) with `callhook mappings try`, then serves it: an
inbound answered call posted out of order and twice becomes one HubSpot call, through the
real worker (which reads only hubspot.yaml and agents.yaml, so the `stack` fixture's worker
serves the new platform as it is) and the fake HubSpot. No Python was written for Dial 9.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from tests.conftest import PLATFORMS, ROOT, Environment, wait_until
from tests.unmapped import assert_kept_unmapped
from webhook_receiver.cli.main import cli
from worker.core.db import get_engine
from worker.core.models import Call, CrmStatus

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
MAPPING = HERE / "dial9.yaml"
SECRET = "dial9-secret-for-tests"
URL = "/webhooks/dial9?token=" + SECRET
COMPANY = "01202912204"  # the Dial 9 number of the documented examples
START = datetime(2026, 3, 18, 10, 0, tzinfo=UTC)


def dropped_in(tmp_path: Path) -> Path:
    """mappings/ as shipped, plus dial9.yaml: what the user's MAPPINGS_DIR looks like."""
    target = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", target)
    shutil.copy(MAPPING, target / "dial9.yaml")
    return target


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


# -- steps 2 and 3: `callhook mappings check` and `callhook mappings try` ------------------


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[Path]:
    mappings = dropped_in(tmp_path)
    env = Environment()
    env.set({"MAPPINGS_DIR": str(mappings), "INSTANCE_DIR": str(tmp_path / "instance")})
    yield mappings
    env.restore()


def test_the_mapping_is_not_shipped() -> None:
    # The walkthrough's platform lives with its test; mappings/ holds real platforms only.
    assert not (ROOT / "mappings" / "dial9.yaml").exists()


def test_check_accepts_the_new_file(cli_env: Path) -> None:
    result = CliRunner().invoke(cli, ["mappings", "check"])
    assert result.exit_code == 0, result.output
    assert f"ok  {cli_env / 'dial9.yaml'}" in result.output
    assert f"platforms: {', '.join(sorted(('dial9', *PLATFORMS)))}" in result.output


def test_check_names_file_key_and_reason_of_a_mistake(cli_env: Path) -> None:
    path = cli_env / "dial9.yaml"
    path.write_text(path.read_text().replace("stage: {value: cdr}", "stage: {value: done}", 1))
    result = CliRunner().invoke(cli, ["mappings", "check"])
    assert result.exit_code == 1
    assert "dial9.yaml: events[2].fields.stage: Value error, 'done' is not a stage" in (
        result.output
    )


def tried(name: str) -> list[dict[str, Any]]:
    """The canonical events `callhook mappings try dial9 <fixture>` prints."""
    result = CliRunner().invoke(cli, ["mappings", "try", "dial9", str(FIXTURES / name)])
    assert result.exit_code == 0, result.output
    printed = result.output.split("canonical events:\n", 1)[1]
    return json.loads(printed.split("\nHubSpot requests once the call has ended", 1)[0])


INCOMING_CALL = "2f533604-aaaf-11e7-b600-7ac8e42434d2"
OUTGOING_CALL = "3dc54a92-aaaf-11e7-b600-7ac8e42434d2"
BASE = {"platform": "dial9", "linked_call_ids": [], "variables": {}}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            # The only event naming both numbers; British national numbers read as GB
            # (default_region) though DEFAULT_REGION is another country.
            "IncomingCall__doc_example.json",
            {
                "call_id": INCOMING_CALL,
                "stage": "ringing",
                "direction": "inbound",
                "external_number": "+441202901222",
                "external_number_raw": "01202901222",
                "company_number": "+441202912204",
                "occurred_at": "2017-10-06T15:58:24Z",
            },
        ),
        (
            # The caller is a Dial 9 address-book contact ({type, id}): no number to read.
            "CallProcessed__doc_incoming_answered.json",
            {
                "call_id": INCOMING_CALL,
                "stage": "cdr",
                "direction": "inbound",
                "agent": "7048",
                "occurred_at": "2017-10-06T15:58:32Z",
                "duration_s": 6,
                "outcome": "answered",
            },
        ),
        (
            "CallProcessed__incoming_unrecognised_caller.json",
            {
                "call_id": INCOMING_CALL,
                "stage": "cdr",
                "direction": "inbound",
                "external_number": "+441202901222",
                "external_number_raw": "01202901222",
                "agent": "7048",
                "occurred_at": "2017-10-06T15:58:32Z",
                "duration_s": 6,
                "outcome": "answered",
            },
        ),
        (
            # International digits without "+" ("441202901222").
            "OutgoingCall__doc_example.json",
            {
                "call_id": OUTGOING_CALL,
                "stage": "ringing",
                "direction": "outbound",
                "external_number": "+441202901222",
                "external_number_raw": "441202901222",
                "company_number": "+441202912204",
                "occurred_at": "2017-10-06T15:58:49Z",
            },
        ),
        (
            "CallProcessed__doc_outgoing_unrecognised_destination.json",
            {
                "call_id": OUTGOING_CALL,
                "stage": "cdr",
                "direction": "outbound",
                "external_number": "+441234567890",
                "external_number_raw": "01234567890",
                "agent": "7048",
                "occurred_at": "2017-10-06T15:58:58Z",
                "duration_s": 5,
                "outcome": "answered",
            },
        ),
    ],
)
def test_try_prints_the_canonical_events(cli_env: Path, name: str, expected: dict) -> None:
    assert tried(name) == [{**BASE, **expected}]


# -- steps 4 and 5: served at /webhooks/dial9, logged by the real worker -------------------


@pytest.fixture
def dial9(stack: dict[str, Any], hubspot, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The receiver built from a MAPPINGS_DIR holding dial9.yaml, with its secret set."""
    from webhook_receiver.web import create_app

    hubspot.reset()
    env = Environment()
    env.set({"MAPPINGS_DIR": str(dropped_in(tmp_path)), "DIAL9_WEBHOOK_SECRET": SECRET})
    yield create_app({"TESTING": True}).test_client()
    env.restore()


def at(second: float) -> int:
    return int((START + timedelta(seconds=second)).timestamp())


def incoming_call(call_id: str, caller: str, second: float) -> dict[str, Any]:
    """IncomingCall, shaped as the documented example."""
    return {
        "payload": {
            "event": "IncomingCall",
            "call_id": call_id,
            "callee_number": COMPANY,
            "caller_number": caller,
        },
        "timestamp": at(second),
        "auth_token": "my-token",
    }


def call_processed(call_id: str, caller: str, duration: int, second: float) -> dict[str, Any]:
    """CallProcessed of an incoming call answered on extension 7048 (caller unrecognised)."""
    return {
        "payload": {
            "event": "CallProcessed",
            "call_id": call_id,
            "call_cost": 0.0,
            "call_type": "incoming",
            "call_duration": duration,
            "call_status": "answered",
            "source": caller,
            "destination": {"type": "extension", "id": 7048},
        },
        "timestamp": at(second),
        "auth_token": "my-token",
    }


def calls_for(hubspot, e164: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [c for c in hubspot.calls() if c["properties"].get("hs_call_from_number") == e164]


def call_row(call_id: str) -> Call | None:
    with Session(get_engine()) as session:
        return session.exec(
            select(Call).where(Call.platform == "dial9", Call.platform_call_id == call_id)
        ).first()


def synced(hubspot, call_id: str, e164: str) -> bool:  # type: ignore[no-untyped-def]
    """HubSpot's record shows the company number: both events were folded and sent."""
    row = call_row(call_id)
    if row is None or row.crm_status != CrmStatus.SYNCED or row.crm_id is None:
        return False
    found = [c for c in calls_for(hubspot, e164) if c["id"] == row.crm_id]
    return bool(found) and found[0]["properties"].get("hs_call_to_number") == "+441202912204"


def test_inbound_answered_call_is_one_hubspot_call_on_the_contact(dial9, hubspot) -> None:  # type: ignore[no-untyped-def]
    contact_id = hubspot.add_contact(firstname="Ada", lastname="Byron", phone="+44 1202 901301")
    call_id, caller = str(uuid.uuid4()), "01202901301"
    ringing = incoming_call(call_id, caller, 0)
    processed = call_processed(call_id, caller, duration=95, second=100)
    # The record before the ringing, then each of them again.
    statuses = [dial9.post(URL, json=body) for body in (processed, ringing, ringing, processed)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 200]
    assert [r.json["status"] for r in statuses] == [
        "accepted",
        "accepted",
        "duplicate",
        "duplicate",
    ]

    wait_until(lambda: synced(hubspot, call_id, "+441202901301"), timeout=60)
    # A second call, sent after: once it is in HubSpot, nothing of the first is pending.
    barrier = str(uuid.uuid4())
    dial9.post(URL, json=incoming_call(barrier, "01202901399", 200))
    dial9.post(URL, json=call_processed(barrier, "01202901399", duration=1, second=210))
    wait_until(lambda: synced(hubspot, barrier, "+441202901399"), timeout=60)

    (call,) = calls_for(hubspot, "+441202901301")
    props = call["properties"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == "+441202901301"
    assert props["hs_call_to_number"] == "+441202912204"
    assert props["hs_call_duration"] == "95000"
    assert props["hs_call_status"] == "COMPLETED"
    assert props["hs_call_title"] == "Inbound call from Ada Byron"
    assert call["associations"]["contacts"] == [contact_id]
    row = call_row(call_id)
    assert row is not None and row.crm_id == call["id"]
    assert (row.agent, row.outcome, row.duration_s) == ("7048", "answered", 95)
    assert row.started_at == START and row.ended_at == START + timedelta(seconds=100)


def test_unknown_event_type_is_kept_with_the_reason(dial9) -> None:  # type: ignore[no-untyped-def]
    # dial9.yaml sets no `on_unmapped`: the default, `accept`, answers 200 and keeps it.
    body = fixture("IncomingCall__doc_example.json")
    body["payload"]["event"] = "CallTransferred"
    response = dial9.post(URL, json=body)
    assert_kept_unmapped(
        response, "no event rule matches this payload (payload.event='CallTransferred')"
    )


def test_the_token_in_the_body_is_not_a_credential(dial9) -> None:  # type: ignore[no-untyped-def]
    # Dial 9's `auth_token` travels in the body; callhook checks the URL's `token`.
    body = fixture("IncomingCall__doc_example.json")
    missing = dial9.post("/webhooks/dial9", json=body)
    assert missing.status_code == 401
    assert missing.json["reason"] == "missing credentials: expected query parameter 'token'"
    wrong = dial9.post("/webhooks/dial9?token=my-token", json=body)
    assert wrong.status_code == 401 and wrong.json["reason"] == "invalid credentials"
