"""Every fixture of every shipped platform gives exactly the events its golden file holds.

The golden file (`<fixture>.events.json`, beside the fixture) is the promise a mapping
makes for that body: its canonical events, or why it is ignored or unmapped. A mapping
change that alters any of them fails here, naming the fixture; after a deliberate change,
`callhook mappings golden --update` rewrites them and `git diff` shows the effect.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from webhook_receiver.mapping import load_mappings
from webhook_receiver.mapping.golden import check, golden_path, platform_fixtures

FILES = load_mappings(ROOT / "mappings")
FIXTURES = platform_fixtures(ROOT / "tests" / "platforms", FILES)


def test_every_shipped_platform_has_fixtures_with_golden_files() -> None:
    assert {platform for platform, _ in FIXTURES} == set(FILES.platforms)


@pytest.mark.parametrize(
    ("platform", "fixture"), FIXTURES, ids=[f"{p}/{f.name}" for p, f in FIXTURES]
)
def test_fixture_gives_its_golden_events(platform: str, fixture: Path) -> None:
    result = check(FILES, platform, fixture)
    assert result.current is not None, (
        f"{result.golden.relative_to(ROOT)} is missing: run `callhook mappings golden --update`"
    )
    assert json.loads(result.current) == json.loads(result.expected), (
        f"{fixture.name} no longer gives its golden events; if the change is deliberate, "
        "run `callhook mappings golden --update` and read the diff"
    )


def test_the_command_finds_a_stale_golden_file_and_update_rewrites_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook_receiver.cli.main import cli

    fixtures = tmp_path / "platforms" / "kavkom" / "fixtures"
    fixtures.mkdir(parents=True)
    source = ROOT / "tests" / "platforms" / "kavkom" / "fixtures" / "cdr__outbound.json"
    body = json.loads(source.read_text())
    body["duration"] = 61
    (fixtures / "cdr__outbound.json").write_text(json.dumps(body))
    golden = golden_path(fixtures / "cdr__outbound.json")
    golden.write_text(golden_path(source).read_text())  # the golden of the 120 s call
    monkeypatch.setenv("MAPPINGS_DIR", str(ROOT / "mappings"))
    monkeypatch.setenv("INSTANCE_DIR", str(tmp_path / "instance"))
    runner = CliRunner()
    args = ["mappings", "golden", "--fixtures", str(tmp_path / "platforms")]
    stale = runner.invoke(cli, args)
    assert stale.exit_code == 1
    assert "differs" in stale.output and "cdr__outbound.events.json" in stale.output
    updated = runner.invoke(cli, [*args, "--update"])
    assert updated.exit_code == 0, updated.output
    (event,) = json.loads(golden.read_text())["events"]
    assert event["duration_s"] == 61
    assert runner.invoke(cli, args).exit_code == 0
