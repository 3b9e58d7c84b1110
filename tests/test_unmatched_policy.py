"""A delivery the mapping cannot read never disables a hook, and is never lost.

`on_unmapped` (docs/mappings.md, "When the mapping cannot read a delivery") says what the
platform is answered: `accept` (the default, and every shipped file's choice) answers 200
{"status": "unmapped"}; `refuse` answers 422 with the reason. Either way the delivery is
kept as `unmapped` with its reason, listed by `callhook events list --status unmapped` and
recovered by `callhook events replay ID` once the mapping file is fixed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlmodel import Session, select

from tests.conftest import (
    KAVKOM_SECRET,
    ROOT,
    WEBHOOK_SECRETS,
    Environment,
    load_fixture,
    wait_until,
)
from tests.unmapped import assert_kept_unmapped, stored
from webhook_receiver.cli.main import cli
from webhook_receiver.mapping import load_mappings
from worker.core.db import get_engine
from worker.core.models import Call, EventStatus
from worker.crm.mapping_files import MappingFileError

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}
PLATFORMS = ("kavkom", "kazoo", "kwebbl", "uis", "voximplant")


def ws_call(call_id: str, state: str) -> dict[str, Any]:
    payload = json.loads(load_fixture("kavkom", "call__ringing_inbound.json"))
    payload["data"].update(callUuid=call_id, state=state)
    return payload


@pytest.fixture
def mappings_copy(stack: dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    """A MAPPINGS_DIR the test may edit, as an operator fixing a file would."""
    target = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", target)
    env = Environment()
    env.set({"MAPPINGS_DIR": str(target)})
    yield target
    env.restore()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def app_client() -> FlaskClient:
    from webhook_receiver.web import create_app

    return create_app({"TESTING": True}).test_client()


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


# -- the policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_shipped_platform_accepts_what_it_cannot_read_and_says_why(platform: str) -> None:
    text = (ROOT / "mappings" / f"{platform}.yaml").read_text()
    assert yaml.safe_load(text)["on_unmapped"] == "accept"  # written out, not left to the default
    assert load_mappings(ROOT / "mappings").platforms[platform].on_unmapped == "accept"


def test_kazoo_never_sees_a_failure_for_an_event_type_it_invents(client) -> None:  # type: ignore[no-untyped-def]
    # KAZOO disables a hook after 6 non-200 answers within 60 s. Ten unknown events in a row
    # (a KAZOO upgrade adding one to `all` hooks) are ten 200s, each kept.
    url = f"/webhooks/kazoo?token={WEBHOOK_SECRETS['kazoo']}"
    text = load_fixture("kazoo", "channel_create__sample.json").decode()
    for n in range(10):
        body = text.replace('"channel_create"', f'"channel_teleport_{n}"')
        response = client.post(url, data=body, content_type="application/json")
        row = assert_kept_unmapped(response, "no event rule matches this payload")
        assert f"channel_teleport_{n}" in row.body


def test_refuse_answers_422_and_keeps_it_all_the_same(mappings_copy: Path) -> None:
    edit(mappings_copy / "kavkom.yaml", "on_unmapped: accept", "on_unmapped: refuse")
    client = app_client()
    unknown = client.post("/webhooks/kavkom", json=ws_call("p-1", "parked"), headers=AUTH)
    assert_kept_unmapped(
        unknown, "websocket call: stage: state 'parked' is not one of", refused=True
    )
    no_rule = client.post("/webhooks/kavkom", json={"event": "conference"}, headers=AUTH)
    assert_kept_unmapped(no_rule, "no event rule matches this payload (event=", refused=True)
    # Not a mapping failure: a broken body is a 400 under either policy.
    broken = client.post("/webhooks/kavkom", data=b"{", content_type="application/json",
                         headers=AUTH)  # fmt: skip
    assert (broken.status_code, broken.json["error"]) == (400, "bad_body")


def test_accept_covers_every_mapping_failure_not_only_unknown_events(client) -> None:  # type: ignore[no-untyped-def]
    # A value the map does not list fails the same way on every delivery: refusing it would
    # count against the hook exactly as an unknown event type would.
    response = client.post("/webhooks/kavkom", json=ws_call("p-2", "parked"), headers=AUTH)
    assert_kept_unmapped(response, "websocket call: stage: state 'parked' is not one of")


def test_the_default_is_accept_and_a_wrong_value_stops_start_up(tmp_path: Path) -> None:
    target = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", target)
    edit(target / "kavkom.yaml", "on_unmapped: accept\n", "")
    assert load_mappings(target).platforms["kavkom"].on_unmapped == "accept"
    edit(target / "kavkom.yaml", "timezone: UTC\n", "timezone: UTC\non_unmapped: ignore\n")
    with pytest.raises(MappingFileError) as refused:
        load_mappings(target)
    assert "kavkom.yaml" in str(refused.value) and "on_unmapped" in str(refused.value)


# -- listing and replaying what was kept ----------------------------------------------------------


def test_an_unmapped_delivery_is_listed_and_replayed_once_the_file_is_fixed(
    mappings_copy: Path,
) -> None:
    client = app_client()
    response = client.post("/webhooks/kavkom", json=ws_call("p-3", "parked"), headers=AUTH)
    row = assert_kept_unmapped(response, "websocket call: stage: state 'parked' is not one of")
    listed = run("events", "list", "--status", "unmapped")
    assert f"{row.id:>6} " in listed and "state 'parked' is not one of" in listed

    # Still unreadable: the row stays unmapped, and says why.
    assert "still cannot be mapped" in run("events", "replay", str(row.id))
    assert stored(row.id).status == EventStatus.UNMAPPED

    edit(
        mappings_copy / "kavkom.yaml",
        "map: {ringing: ringing,",
        "map: {parked: held, ringing: ringing,",
    )
    assert "mapped to 1 event(s); queued" in run("events", "replay", str(row.id))
    wait_until(lambda: stored(row.id).status == EventStatus.PROCESSED, timeout=30)
    with Session(get_engine()) as session:
        call = session.exec(select(Call).where(Call.platform_call_id == "p-3")).one()
        assert call.stage == "held"

    # Processed: in its call already, so a replay would record its events twice.
    again = CliRunner().invoke(cli, ["events", "replay", str(row.id)])
    assert again.exit_code == 1 and "is processed: only unmapped, failed, ignored" in again.output


def test_a_body_refused_415_is_kept_and_replayed_when_the_file_accepts_its_type(
    mappings_copy: Path,
) -> None:
    client = app_client()
    body = json.dumps(ws_call("p-4", "ringing"))
    response = client.post("/webhooks/kavkom", data=body, content_type="text/plain",
                           headers=AUTH)  # fmt: skip
    assert response.status_code == 415
    assert response.json["reason"] == "content type 'text/plain' is not JSON or form-encoded"
    row = stored(response.json["id"])
    assert (row.status, row.content_type, row.body) == (EventStatus.UNMAPPED, "text/plain", body)
    # The same delivery again: the same row, the same answer.
    assert client.post("/webhooks/kavkom", data=body, content_type="text/plain",
                       headers=AUTH).json["id"] == row.id  # fmt: skip

    edit(
        mappings_copy / "kavkom.yaml",
        "accept: [json]",
        "accept: [json]\nany_content_type_is_json: true",
    )
    assert "queued" in run("events", "replay", str(row.id))
    wait_until(lambda: stored(row.id).status == EventStatus.PROCESSED, timeout=30)
