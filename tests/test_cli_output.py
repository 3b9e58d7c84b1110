"""What an operator reads in `callhook calls list` and `callhook mappings try`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, Environment, base_env, fresh_database


@pytest.fixture(scope="module")
def env(redis_server, tmp_path_factory) -> Iterator[None]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("cli-output")
    environment = Environment()
    environment.set(base_env(fresh_database("sqlite", tmp), redis_server.url, tmp / "i", None))
    yield
    environment.restore()


def run(*args: str) -> str:
    from webhook_receiver.cli.main import cli

    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_calls_list_has_headers_and_names_a_note_as_a_note(env: Any) -> None:
    from worker.core.db import session_scope
    from worker.core.models import Call

    assert run("calls", "list").strip() == "no calls"
    with session_scope() as session:
        session.add(
            Call(
                platform="kavkom", platform_call_id="c-1", stage="cdr", direction="inbound",
                external_number="+33612345678", outcome="answered", crm_status="synced",
                crm_id="901", crm_contact_note="alice@example.com has no HubSpot owner",
            )
        )  # fmt: skip
    header, row, note = run("calls", "list").splitlines()
    assert header.split()[:4] == ["ID", "PLATFORM", "CALL", "ID"]
    assert "+33612345678" in row and "crm=901" in row
    assert note.strip() == "note: alice@example.com has no HubSpot owner"


def test_mappings_try_says_what_the_contact_search_is(env: Any) -> None:
    out = run(
        "mappings",
        "try",
        "kavkom",
        str(ROOT / "tests/platforms/kavkom/fixtures/cdr__outbound.json"),
    )
    assert "no contact lookup" not in out
    assert "the contact search is shown as it would be sent" in out
    assert "/crm/v3/objects/contacts/search" in out
