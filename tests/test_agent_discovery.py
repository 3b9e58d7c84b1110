"""Agent discovery: platform users matched to HubSpot owners, proposed as agents.yaml lines.

The platforms are the fakes of tests/platforms (each listing users the way its vendor's
documentation shows), HubSpot is the fake HubSpot listing its owners page by page, and the
matching, the diff and the CLI run unmodified. agents.yaml is never written.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import ROOT, TOKEN, Environment, RedisServer, free_port
from tests.conftest import fresh_database as new_database
from tests.fake_hubspot import FakeHubSpot
from tests.platforms.kavkom.fake_api import FakeKavkom
from tests.platforms.kazoo.fake_api import FakeKazoo
from tests.platforms.kwebbl.fake_api import FakeKwebbl
from tests.platforms.uis.fake_api import FakeUis

AGENTS = """\
# The team.
kind: agents
agents:
  - email: alice@example.com
    name: Alice Martin
    extensions:
      kavkom: ["1001"]
"""
DOMAIN = "ddcfeb62-110f-4bd7-b7a9-965e1a78295f"
ACCOUNT = "4fe69c5b61015084f1fe5684abc6e502"


class Fakes:
    """Every platform's fake, filled with one small company."""

    def __init__(self) -> None:
        self.kavkom = FakeKavkom(token="kavkom-token", domain_uuid=DOMAIN, extensions=[])
        self.kazoo = FakeKazoo(account_id=ACCOUNT, auth_token="kazoo-token", page_size=1)
        self.uis = FakeUis(access_token="uis-token")
        self.kwebbl = FakeKwebbl()

    def fill(self) -> None:
        self.kavkom.describe("1001", "Alice Martin")  # already in agents.yaml
        self.kavkom.describe("1002", "Dan Petit")  # by name
        self.kavkom.describe("1003", "Nobody Known")  # no owner
        self.carol = self.kazoo.add_user("Carol", "Lenoir", "carol@example.com")  # by email
        self.kazoo.add_device(self.carol, "carol_desk")
        self.alice_kazoo = self.kazoo.add_user("Alice", "Martin", "alice@example.com")
        self.uis.add_employee(
            31, full_name="Lenoir Carol", email="carol@example.com", extension="101"
        )
        self.uis.add_employee(40, full_name="Ivanov Ivan Ivanovich", email="ivan@example.org")
        self.emile = self.kwebbl.add_extension("1000", name="Émile Zola")  # accents ignored
        self.kwebbl.add_extension("345", kind="dialplan", name="Sales")  # not a person
        self.kwebbl_token = self.kwebbl.issue_token(owner=self.emile, scope="company.users")


@pytest.fixture(scope="module")
def setup(
    redis_server: RedisServer, hubspot: FakeHubSpot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from worker.reports.agent_discovery import forget_owners

    tmp = tmp_path_factory.mktemp("agent-discovery")
    mappings = tmp / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    (mappings / "agents.yaml").write_text(AGENTS)
    fakes = Fakes()
    with fakes.kavkom, fakes.kazoo, fakes.uis, fakes.kwebbl:
        fakes.fill()
        env = Environment()
        env.set({
            "DATABASE_URL": new_database("sqlite", tmp), "REDIS_URL": redis_server.url,
            "MAPPINGS_DIR": str(mappings), "INSTANCE_DIR": str(tmp / "instance"),
            "DEFAULT_REGION": "FR", "HUBSPOT_ACCESS_TOKEN": TOKEN,
            "HUBSPOT_BASE_URL": hubspot.url,
            "KAVKOM_API_TOKEN": "kavkom-token", "KAVKOM_DOMAIN_UUID": DOMAIN,
            "KAVKOM_API_BASE_URL": fakes.kavkom.url,
            "KAZOO_API_URL": fakes.kazoo.url, "KAZOO_ACCOUNT_ID": ACCOUNT,
            "KAZOO_AUTH_TOKEN": "kazoo-token",
            "UIS_ACCESS_TOKEN": "uis-token", "UIS_VIRTUAL_PHONE_NUMBER": "74993720692",
            "UIS_DATA_API_URL": fakes.uis.data_url,
            "KWEBBL_ACCESS_TOKEN": fakes.kwebbl_token, "KWEBBL_API_BASE_URL": fakes.kwebbl.url,
        })  # fmt: skip
        hubspot.reset()
        for email, first, last in [
            ("alice@example.com", "Alice", "Martin"),
            ("carol@example.com", "Carol", "Lenoir"),
            ("dan.petit@example.com", "Dan", "Petit"),
            ("emile.zola@example.com", "Emile", "Zola"),
        ]:
            hubspot.add_owner(email, first, last)
        for n in range(130):  # more than one page of owners
            hubspot.add_owner(f"colleague{n}@example.com", "Colleague", str(n))
        forget_owners()
        yield {"fakes": fakes, "mappings": mappings, "env": env}
        forget_owners()
        env.restore()
        hubspot.reset()


def run() -> Any:
    from worker.core.settings import get_settings
    from worker.reports.agent_discovery import discover, forget_owners

    forget_owners()
    return discover(get_settings())


def by_platform(result: Any) -> dict[str, Any]:
    return {report.listing.platform: report for report in result.platforms}


def test_every_configured_platform_lists_its_users(setup: dict[str, Any]) -> None:
    fakes = setup["fakes"]
    reports = by_platform(run())
    assert list(reports) == ["kavkom", "kwebbl", "kazoo", "uis"]
    for report in reports.values():
        assert report.listing.error is None, report.listing.error
    idents = {name: {u.ident for u in r.listing.users} for name, r in reports.items()}
    assert idents["kavkom"] == {"1001", "1002", "1003"}
    assert idents["kazoo"] == {fakes.carol, fakes.alice_kazoo}  # owner_id: the user's id
    assert idents["uis"] == {"31", "40"}
    assert idents["kwebbl"] == {fakes.emile}  # the dialplan is not a person
    carol = next(u for u in reports["kazoo"].listing.users if u.ident == fakes.carol)
    assert carol.detail == "devices: carol_desk" and carol.email == "carol@example.com"
    # KAZOO paged one user at a time: both pages were read.
    users_pages = [r for r in fakes.kazoo.requests() if r["path"].endswith("/users")]
    assert len(users_pages) >= 2
    # No listing ever carries a secret into what is shown.
    shown = repr(reports)
    assert "aB3xY9zK" not in shown and "kazoo-token" not in shown and "uis-token" not in shown


def test_users_are_matched_by_email_then_by_name(setup: dict[str, Any]) -> None:
    fakes = setup["fakes"]
    result = run()
    assert result.owners.problem is None and len(result.owners.owners) == 134  # two pages
    reports = by_platform(result)
    new = {
        (m.user.platform, m.user.ident): (m.owner.email, m.by)
        for r in reports.values()
        for m in r.new
    }
    assert new == {
        ("kavkom", "1002"): ("dan.petit@example.com", "name"),
        ("kazoo", fakes.carol): ("carol@example.com", "email"),
        ("uis", "31"): ("carol@example.com", "email"),
        ("kwebbl", fakes.emile): ("emile.zola@example.com", "name"),
    }
    unmatched = {
        (u.user.platform, u.user.ident): u.reason for r in reports.values() for u in r.unmatched
    }
    assert "no HubSpot owner named 'Nobody Known'" in unmatched[("kavkom", "1003")]
    assert "no HubSpot owner with the email ivan@example.org" in unmatched[("uis", "40")]
    known = {
        (k.match.user.platform, k.match.user.ident): k for r in reports.values() for k in r.known
    }
    assert known[("kavkom", "1001")].agent_email == "alice@example.com"
    assert not known[("kavkom", "1001")].note
    # Alice is listed, but not with her KAZOO id: said, not proposed.
    assert "add " in known[("kazoo", fakes.alice_kazoo)].note


def test_the_diff_adds_only_missing_agents_and_agents_yaml_is_untouched(
    setup: dict[str, Any],
) -> None:
    from worker.core.agents import AgentDirectory

    path: Path = setup["mappings"] / "agents.yaml"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    result = run()
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert result.problem is None
    assert {p.email for p in result.proposed} == {
        "carol@example.com", "dan.petit@example.com", "emile.zola@example.com",
    }  # fmt: skip
    carol = next(p for p in result.proposed if p.email == "carol@example.com")
    assert carol.extensions == {"kazoo": [setup["fakes"].carol], "uis": ["31"]}
    lines = result.diff.splitlines()
    assert lines[0] == "--- a/mappings/agents.yaml" and lines[1] == "+++ b/mappings/agents.yaml"
    assert not [line for line in lines[2:] if line.startswith("-")]  # nothing removed
    added = [line[1:] for line in lines[2:] if line.startswith("+")]
    assert "  - email: carol@example.com" in added
    assert not any("alice" in line for line in added)
    # Appending the added lines gives a valid file with everyone.
    merged = AgentDirectory.model_validate(
        yaml.safe_load(before.decode() + "\n".join(added) + "\n")
    )
    assert [a.email for a in merged.agents] == [
        "alice@example.com", "carol@example.com", "dan.petit@example.com",
        "emile.zola@example.com",
    ]  # fmt: skip
    emile = merged.by_email("emile.zola@example.com")
    assert emile is not None and emile.name == "Emile Zola"
    assert emile.extensions == {"kwebbl": [setup["fakes"].emile]}


def test_a_platform_that_fails_is_reported_and_the_others_are_still_listed(
    setup: dict[str, Any],
) -> None:
    from worker.core.settings import get_settings

    setup["fakes"].uis.fail_next(502)
    setup["env"].set({"KAZOO_API_URL": f"http://127.0.0.1:{free_port()}"})  # nobody listens
    try:
        start_settings = get_settings()
        assert start_settings.kazoo_api_url.startswith("http://127.0.0.1:")
        reports = by_platform(run())
    finally:
        setup["env"].set({"KAZOO_API_URL": setup["fakes"].kazoo.url})
    assert "could not reach KAZOO" in (reports["kazoo"].listing.error or "")
    assert "UIS could not list employees (HTTP 502)" in (reports["uis"].listing.error or "")
    assert {u.ident for u in reports["kavkom"].listing.users} == {"1001", "1002", "1003"}
    assert reports["kwebbl"].listing.users and reports["kwebbl"].listing.error is None


def test_a_refused_token_says_what_to_fix(setup: dict[str, Any]) -> None:
    fakes = setup["fakes"]
    narrow = fakes.kwebbl.issue_token(owner=fakes.emile, scope="calls.create")
    setup["env"].set({"KWEBBL_ACCESS_TOKEN": narrow, "KAVKOM_API_TOKEN": "not-a-token"})
    try:
        reports = by_platform(run())
    finally:
        setup["env"].set(
            {"KWEBBL_ACCESS_TOKEN": fakes.kwebbl_token, "KAVKOM_API_TOKEN": "kavkom-token"}
        )
    assert "company.users scope" in (reports["kwebbl"].listing.error or "")
    assert "Kavkom refused callhook's API token" in (reports["kavkom"].listing.error or "")
    assert "not-a-token" not in repr(reports)


def test_the_cli_prints_each_platform_the_matches_and_the_diff(setup: dict[str, Any]) -> None:
    from webhook_receiver.cli.agents_discover import discover_command
    from worker.reports.agent_discovery import forget_owners

    forget_owners()
    result = CliRunner().invoke(discover_command, [])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "HubSpot: 134 owner(s)" in out
    assert "Kavkom: 3 users" in out and "KAZOO: 2 users" in out
    assert "new      1002 Dan Petit (extension 1002) -> Dan Petit <dan.petit@example.com>" in out
    assert "no match 1003 Nobody Known" in out
    assert "Proposed additions to mappings/agents.yaml (nothing was written" in out
    assert "+++ b/mappings/agents.yaml" in out and "+  - email: carol@example.com" in out
    assert "kazoo-token" not in out and "aB3xY9zK" not in out


def test_without_a_hubspot_token_nothing_is_matched_and_it_says_why(
    setup: dict[str, Any],
) -> None:
    setup["env"].set({"HUBSPOT_ACCESS_TOKEN": None})
    try:
        result = run()
    finally:
        setup["env"].set({"HUBSPOT_ACCESS_TOKEN": TOKEN})
    assert result.owners.dry_run and not result.proposed and result.diff == ""
    reasons = {u.reason for r in result.platforms for u in r.unmatched}
    assert reasons and all(r.startswith("dry run") for r in reasons)


def test_hubspot_refusing_the_owners_listing_is_said_and_nothing_is_proposed(
    setup: dict[str, Any], hubspot: FakeHubSpot
) -> None:
    hubspot.fail_next(1, 401, path_prefix="/crm/v3/owners")
    result = run()
    assert (result.owners.problem or "").startswith(
        "HubSpot's owners could not be read: HubSpot 401"
    )
    assert not result.proposed
    assert all(r.listing.error is None for r in result.platforms)  # the platforms still listed
