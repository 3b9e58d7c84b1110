"""Broken mapping files fail at start-up and in `callhook mappings check` with file, key, reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, Environment
from webhook_receiver.cli.main import cli
from webhook_receiver.mapping import load_mappings
from worker.core.yaml_files import MappingFileError


@pytest.fixture
def mappings_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    target = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", target)
    env = Environment()
    env.set(
        {
            "MAPPINGS_DIR": str(target),
            "INSTANCE_DIR": str(tmp_path / "instance"),
            "DATABASE_URL": None,
            "REDIS_URL": None,
        }
    )
    yield target
    env.restore()


def test_shipped_mappings_pass_the_check(mappings_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["mappings", "check"])
    assert result.exit_code == 0, result.output
    assert "platforms: kavkom" in result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("stage:\n        path: state", "stage:\n        path: state\n        colour: red"),
            "kavkom.yaml: events[0].fields.stage.colour: Extra inputs are not permitted",
        ),
        (
            ("map: {ringing: ringing, active: answered", "map: {ringing: ringing, active: talking"),
            "kavkom.yaml: events[0].fields.stage: Value error, 'talking' is not a stage",
        ),
        (
            ("timezone: UTC", "timezone: Mars/Olympus"),
            "kavkom.yaml: timezone: Value error, 'Mars/Olympus' is not an IANA time zone",
        ),
        (("scheme: Bearer", "scheme: [Bearer"), "kavkom.yaml: line"),
        (("platform: kavkom", "platform: kavcom"), "kavkom.yaml: platform: 'kavcom' must match"),
    ],
)
def test_broken_file_is_reported_with_file_key_and_reason(
    mappings_dir: Path, edit: tuple[str, str], expected: str
) -> None:
    path = mappings_dir / "kavkom.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(MappingFileError) as info:
        load_mappings(mappings_dir)
    assert expected in str(info.value)
    result = CliRunner().invoke(cli, ["mappings", "check"])
    assert result.exit_code == 1
    assert expected in result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("expr: \"'outbound' if (request or to)", "expr: \"'outbound' if (request or to))"),
            "kazoo.yaml: events[2].fields.direction.expr: Value error, expression error: "
            "unexpected ')'",
        ),
        (
            ("        unmapped: absent", "        unmapped: ignore"),
            "kazoo.yaml: events[0].fields.outcome.unmapped: Input should be 'error' or 'absent'",
        ),
    ],
)
def test_broken_expression_is_reported_with_file_key_and_reason(
    mappings_dir: Path, edit: tuple[str, str], expected: str
) -> None:
    path = mappings_dir / "kazoo.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    result = CliRunner().invoke(cli, ["mappings", "check"])
    assert result.exit_code == 1
    assert expected in result.output


def test_bad_hubspot_status_is_reported(mappings_dir: Path) -> None:
    path = mappings_dir / "hubspot.yaml"
    path.write_text(path.read_text().replace("busy: BUSY", "busy: ENGAGED"))
    with pytest.raises(MappingFileError) as info:
        load_mappings(mappings_dir)
    assert (
        "hubspot.yaml: call.status: Value error, busy: 'ENGAGED' is not a HubSpot call status"
        in str(info.value)
    )


def test_app_refuses_to_start_with_a_broken_file(mappings_dir: Path) -> None:
    from webhook_receiver.web import create_app

    (mappings_dir / "agents.yaml").write_text("kind: agents\nagents:\n  - email: not-an-email\n")
    with pytest.raises(SystemExit) as info:
        create_app()
    assert "agents.yaml: agents[0].email" in str(info.value)
