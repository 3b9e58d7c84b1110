"""KAZOO hook set-up: what ``callhook kazoo webhooks`` lists, plans and creates.

The real client talks HTTP to ``FakeKazoo`` (tests/platforms/kazoo/fake_api.py), whose
webhooks API follows crossbar's: authenticated, paginated listing of summaries, validated
creation. The hooks it creates are then checked against callhook's own receiver: KAZOO's
deliveries to their URI are accepted.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, WEBHOOK_SECRETS, Environment, load_fixture
from tests.platforms.kazoo.fake_api import FakeKazoo
from webhook_receiver.cli.platforms import kazoo
from worker.telephony.kazoo_webhooks import (
    HOOK_EVENTS,
    KazooSetupError,
    KazooWebhooksApi,
    choose_format,
    set_up_webhooks,
    webhook_uri,
)

ACCOUNT = uuid.uuid4().hex
TOKEN = "kazoo-auth-token-for-tests"
SECRET = "hook-secret-0123456789abcdef"
PUBLIC = "https://callhook.example.com"
URI = f"{PUBLIC}/webhooks/kazoo?token={SECRET}"


@pytest.fixture
def fake() -> Iterator[FakeKazoo]:
    with FakeKazoo(account_id=ACCOUNT, auth_token=TOKEN) as fake:
        yield fake


@pytest.fixture
def api(fake: FakeKazoo) -> Iterator[KazooWebhooksApi]:
    client = KazooWebhooksApi(base_url=fake.url, account_id=ACCOUNT, auth_token=TOKEN)
    yield client
    client.close()


def set_up(api: KazooWebhooksApi, **options: Any):  # type: ignore[no-untyped-def]
    return set_up_webhooks(api, public_base_url=PUBLIC, secret=SECRET, **options)


def puts(fake: FakeKazoo) -> list[dict[str, Any]]:
    return [r for r in fake.requests() if r["method"] == "PUT"]


def hooks_by_event(fake: FakeKazoo) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in fake.webhooks.values():
        found.setdefault(doc["hook"], []).append(doc)
    return found


# -- the plan and the API ----------------------------------------------------------------------
def test_apply_creates_one_json_hook_per_channel_event(
    fake: FakeKazoo, api: KazooWebhooksApi
) -> None:
    plan = set_up(api, apply=True)

    assert [h.action for h in plan.hooks] == ["create"] * 4
    assert all(h.created_id in fake.webhooks for h in plan.hooks)
    assert sorted(hooks_by_event(fake)) == sorted(HOOK_EVENTS)
    for request in puts(fake):
        assert request["path"] == f"/v2/accounts/{ACCOUNT}/webhooks"
        assert request["headers"]["X-Auth-Token"] == TOKEN
        assert request["status"] == 201
        data = request["json"]["data"]
        assert data == {
            "name": f"callhook {data['hook']}",
            "uri": URI,
            "hook": data["hook"],
            "http_verb": "post",
            "format": "json",  # the fake says 4.3.1
        }


def test_running_again_creates_nothing_twice(fake: FakeKazoo, api: KazooWebhooksApi) -> None:
    set_up(api, apply=True)
    again = set_up(api, apply=True)
    assert [h.action for h in again.hooks] == ["keep"] * 4
    assert len(puts(fake)) == 4
    assert all(len(docs) == 1 for docs in hooks_by_event(fake).values())


def test_existing_hook_with_same_uri_and_event_is_kept(
    fake: FakeKazoo, api: KazooWebhooksApi
) -> None:
    kept = fake.add_webhook("channel_destroy", URI, name="made by hand")
    # Same event, another receiver: not ours, so ours is still created.
    fake.add_webhook("channel_create", "https://crm.example.com/kazoo")
    plan = set_up(api, apply=True)
    actions = {h.event: h.action for h in plan.hooks}
    assert actions == {
        "channel_create": "create",
        "channel_answer": "create",
        "channel_bridge": "create",
        "channel_destroy": "keep",
    }
    assert [d["id"] for d in hooks_by_event(fake)["channel_destroy"]] == [kept]
    assert plan.strays == []


def test_an_all_hook_to_the_same_uri_covers_every_event(
    fake: FakeKazoo, api: KazooWebhooksApi
) -> None:
    fake.add_webhook("all", URI)
    plan = set_up(api, apply=True)
    assert {h.action for h in plan.hooks} == {"covered"}
    assert puts(fake) == []


def test_listing_is_read_across_pages(api: KazooWebhooksApi) -> None:
    with FakeKazoo(account_id=ACCOUNT, auth_token=TOKEN, page_size=2) as paged:
        client = KazooWebhooksApi(base_url=paged.url, account_id=ACCOUNT, auth_token=TOKEN)
        for n in range(5):
            paged.add_webhook("object", f"https://other.example.com/{n}")
        for event in HOOK_EVENTS:
            paged.add_webhook(event, URI)
        hooks, version = client.list_hooks()
        plan = set_up_webhooks(client, public_base_url=PUBLIC, secret=SECRET, apply=True)
        client.close()
        starts = [r["query"].get("start_key") for r in paged.requests() if r["method"] == "GET"]
    assert len(hooks) == 9 and version == "4.3.1"
    assert starts[0] is None and all(starts[1:5])  # five pages, each from the last key
    assert {h.action for h in plan.hooks} == {"keep"}


@pytest.mark.parametrize(
    ("version", "requested", "expected"),
    [
        ("4.3.1", "auto", "json"),
        ("4.3.0", "auto", "json"),
        ("5.0.12", "auto", "json"),
        ("4.2.45", "auto", "form-data"),
        ("3.22.10", "auto", "form-data"),
        (None, "auto", "form-data"),
        ("4.3.1", "form", "form-data"),
        ("4.2.45", "json", "json"),
    ],
)
def test_format_follows_the_servers_version_unless_asked(
    version: str | None, requested: str, expected: str
) -> None:
    assert choose_format(requested, version) == expected


def test_kazoo_before_4_3_gets_form_data_hooks() -> None:
    with FakeKazoo(account_id=ACCOUNT, auth_token=TOKEN, version="4.2.45") as old:
        client = KazooWebhooksApi(base_url=old.url, account_id=ACCOUNT, auth_token=TOKEN)
        plan = set_up_webhooks(client, public_base_url=PUBLIC, secret=SECRET, apply=True)
        client.close()
        bodies = [r["json"]["data"] for r in old.requests() if r["method"] == "PUT"]
    assert plan.format == "form-data"
    assert len(bodies) == 4 and all("format" not in body for body in bodies)


def test_disabled_and_stray_hooks_are_pointed_out(fake: FakeKazoo, api: KazooWebhooksApi) -> None:
    fake.add_webhook(
        "channel_destroy", URI, enabled=False, disable_reason="too many failed attempts"
    )
    stray = fake.add_webhook("channel_create", f"{PUBLIC}/webhooks/kazoo?token=old-secret")
    plan = set_up(api)
    text = "\n".join(plan.describe(SECRET))
    assert "DISABLED by KAZOO (too many failed attempts)" in text
    assert '{"data": {"re-enable": true}}' in text
    assert [s.id for s in plan.strays] == [stray]
    assert SECRET not in text and "token=<KAZOO_WEBHOOK_SECRET>" in text
    assert puts(fake) == []  # a plan changes nothing


@pytest.mark.parametrize(
    ("arrange", "expected"),
    [
        ({"auth_token": "expired-token"}, "KAZOO refused KAZOO_AUTH_TOKEN (HTTP 401)"),
        ({"account_id": "f" * 32}, "(HTTP 403)"),
        ({"fail": 500}, "KAZOO refused to list the account's hooks (HTTP 500: scripted failure)"),
        ({"base_url": "/v1"}, "KAZOO answered 404"),
    ],
)
def test_refusals_are_readable_and_never_show_the_token(
    fake: FakeKazoo, arrange: dict[str, Any], expected: str
) -> None:
    if "fail" in arrange:
        fake.fail_next(arrange["fail"])
    client = KazooWebhooksApi(
        base_url=fake.url + arrange.get("base_url", ""),
        account_id=arrange.get("account_id", ACCOUNT),
        auth_token=arrange.get("auth_token", TOKEN),
    )
    with pytest.raises(KazooSetupError) as refused:
        set_up_webhooks(client, public_base_url=PUBLIC, secret=SECRET, apply=True)
    client.close()
    assert expected in str(refused.value)
    assert TOKEN not in str(refused.value) and SECRET not in str(refused.value)


def test_validation_errors_name_the_field(fake: FakeKazoo, api: KazooWebhooksApi) -> None:
    with pytest.raises(KazooSetupError) as refused:
        api.create_hook({"name": "x", "uri": URI, "hook": "channel_hangup"})
    assert "hook: Value not found in enumerated list of values" in str(refused.value)


def test_fake_webhooks_api_speaks_crossbar(fake: FakeKazoo) -> None:
    import requests

    url = f"{fake.url}/v2/accounts/{ACCOUNT}/webhooks"
    assert requests.get(url, timeout=5).status_code == 401
    created = requests.put(
        url,
        json={"data": {"name": "n", "uri": URI, "hook": "channel_answer"}},
        headers={"X-Auth-Token": TOKEN},
        timeout=5,
    )
    assert created.status_code == 201
    body = requests.get(url, headers={"X-Auth-Token": TOKEN}, timeout=5).json()
    assert body["status"] == "success" and body["version"] == "4.3.1"
    (row,) = body["data"]
    assert row == {
        "id": created.json()["data"]["id"],
        "hook": "channel_answer",
        "name": "n",
        "uri": URI,
        "enabled": True,
    }


def test_uri_needs_a_public_address_and_a_secret() -> None:
    assert webhook_uri("https://h.example.com/", "a+b") == (
        "https://h.example.com/webhooks/kazoo?token=a%2Bb"
    )
    with pytest.raises(KazooSetupError, match="PUBLIC_BASE_URL"):
        webhook_uri("", SECRET)
    with pytest.raises(KazooSetupError, match="KAZOO_WEBHOOK_SECRET"):
        webhook_uri(PUBLIC, "")


# -- the hooks reach callhook ------------------------------------------------------------
def test_deliveries_to_the_created_uri_are_accepted(client, fake: FakeKazoo) -> None:  # type: ignore[no-untyped-def]
    secret = WEBHOOK_SECRETS["kazoo"]  # what the receiver under test expects
    for version, fixture, content_type in [
        ("4.3.1", "channel_create__sample.json", "application/json"),
        (
            "4.2.45",
            "channel_create__inbound_customer_leg.form",
            "application/x-www-form-urlencoded",
        ),
    ]:
        fake.version, fake.webhooks = version, {}
        api = KazooWebhooksApi(base_url=fake.url, account_id=ACCOUNT, auth_token=TOKEN)
        set_up_webhooks(api, public_base_url="https://h.example.com", secret=secret, apply=True)
        api.close()
        (hook,) = hooks_by_event(fake)["channel_create"]
        path = hook["uri"].removeprefix("https://h.example.com")
        response = client.post(path, data=load_fixture("kazoo", fixture), content_type=content_type)
        assert response.status_code == 200, response.json
        assert response.json["status"] in ("accepted", "duplicate")


# -- the command ------------------------------------------------------------------------
@pytest.fixture
def env(fake: FakeKazoo) -> Iterator[Environment]:
    environment = Environment()
    environment.set(
        {
            "MAPPINGS_DIR": str(ROOT / "mappings"),
            "PUBLIC_BASE_URL": PUBLIC,
            "KAZOO_WEBHOOK_SECRET": SECRET,
            "KAZOO_API_URL": fake.url,
            "KAZOO_ACCOUNT_ID": ACCOUNT,
            "KAZOO_AUTH_TOKEN": TOKEN,
        }
    )
    yield environment
    environment.restore()


def test_command_without_apply_prints_the_plan_and_changes_nothing(
    fake: FakeKazoo, env: Environment
) -> None:
    result = CliRunner().invoke(kazoo, ["webhooks"])
    assert result.exit_code == 0, result.output
    assert (
        "KAZOO 4.3.1: hooks to https://callhook.example.com/webhooks/kazoo?token=" in result.output
    )
    assert result.output.count("  create   ") == 4
    assert "4 hook(s) to create: run again with --apply" in result.output
    assert SECRET not in result.output and TOKEN not in result.output
    assert puts(fake) == []


def test_command_with_apply_creates_then_keeps(fake: FakeKazoo, env: Environment) -> None:
    first = CliRunner().invoke(kazoo, ["webhooks", "--apply", "--format", "form"])
    assert first.exit_code == 0, first.output
    assert first.output.count("created (id ") == 4
    assert all("format" not in doc for doc in fake.webhooks.values())
    second = CliRunner().invoke(kazoo, ["webhooks", "--apply"])
    assert second.output.count("already exists") == 4
    assert "nothing to create" in second.output or "done" in second.output
    assert len(fake.webhooks) == 4


def test_command_reports_kazoo_refusals(fake: FakeKazoo, env: Environment) -> None:
    env.set({"KAZOO_AUTH_TOKEN": "expired-token"})
    result = CliRunner().invoke(kazoo, ["webhooks", "--apply"])
    assert result.exit_code == 1
    assert "KAZOO refused KAZOO_AUTH_TOKEN" in result.output


def test_command_apply_without_api_access_says_what_to_set(
    fake: FakeKazoo, env: Environment
) -> None:
    env.set({"KAZOO_AUTH_TOKEN": None})
    result = CliRunner().invoke(kazoo, ["webhooks", "--apply"])
    assert result.exit_code == 1
    assert "set KAZOO_API_URL, KAZOO_ACCOUNT_ID and KAZOO_AUTH_TOKEN" in result.output


def test_command_without_api_access_shows_curl_commands_that_work(
    fake: FakeKazoo, env: Environment
) -> None:
    env.set({"KAZOO_API_URL": None, "KAZOO_AUTH_TOKEN": None})
    result = CliRunner().invoke(kazoo, ["webhooks", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    script = result.output.split("by hand (the shell reads the secrets from the environment):")[1]
    assert script.count("curl ") == 4
    # Run them as an admin would, with the secrets in the shell's environment.
    shell_env = {
        **os.environ,
        "KAZOO_API_URL": fake.url,
        "KAZOO_ACCOUNT_ID": ACCOUNT,
        "KAZOO_AUTH_TOKEN": TOKEN,
        "KAZOO_WEBHOOK_SECRET": SECRET,
    }
    subprocess.run(["bash", "-e", "-c", script], env=shell_env, check=True, capture_output=True)
    assert sorted(hooks_by_event(fake)) == sorted(HOOK_EVENTS)
    assert {d["uri"] for d in fake.webhooks.values()} == {URI}
    assert {d["format"] for d in fake.webhooks.values()} == {"json"}
