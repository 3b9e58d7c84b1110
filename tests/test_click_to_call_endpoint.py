"""Click-to-call from the agent's page: /agent/call rings the agent, then the number.

Each platform's API is a fake server speaking as the platforms' documentation says
(tests/platforms/<platform>/fake_api.py); the receiver reaches it with the real
client, configured only through the environment, the way a deployment is.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import ROOT, Environment, RedisServer, fresh_database
from tests.platforms.kavkom.fake_api import FakeKavkom
from tests.platforms.kazoo.fake_api import FakeKazoo
from tests.platforms.kwebbl.fake_api import FakeKwebbl
from tests.platforms.uis.fake_api import FakeUis

DOMAIN = "0b6f3c1e-5d2a-4f7b-9c8e-1a2b3c4d5e6f"
AGENTS = """
kind: agents
agents:
  - email: kav@example.com
    extensions: {{kavkom: ["901"]}}
  - email: kweb@example.com
    extensions: {{kwebbl: ["{kwebbl_ext}"]}}
  - email: kaz@example.com
    extensions: {{kazoo: ["d860229e722bf8f738737365b0b1e333"]}}
    dial: {{platform: kazoo, id: "{c2c}"}}
  - email: uis@example.com
    dial: {{platform: uis, id: "25"}}
  - email: nodial@example.com
    extensions: {{voximplant: ["1723"]}}
"""
EMAILS = ("kav@example.com", "kweb@example.com", "kaz@example.com", "uis@example.com",
          "nodial@example.com")  # fmt: skip


@contextlib.contextmanager
def c2c_app(redis_server: RedisServer, tmp: Path) -> Iterator[dict[str, Any]]:
    """The receiver app with every platform's fake API configured, as a deployment is.

    UIS is a Russian platform: its agent dials a Russian number, so Russia is allowed
    besides DEFAULT_REGION's France (tests/test_dial_policy.py checks the policy itself).
    """
    with (
        FakeKavkom(token="kav-token", domain_uuid=DOMAIN) as kavkom,
        FakeKwebbl() as kwebbl,
        FakeKazoo(account_id="acc0123456789abcdef0123456789ab", auth_token="kz-token") as kazoo,
        FakeUis(access_token="uis-token") as uis,
    ):
        kwebbl_ext = kwebbl.add_extension("201")
        kwebbl_token = kwebbl.issue_token(owner=kwebbl_ext)
        c2c = kazoo.add_c2c("1001")
        uis.add_employee(25)
        mappings = tmp / "mappings"
        shutil.copytree(ROOT / "mappings", mappings)
        (mappings / "agents.yaml").write_text(AGENTS.format(kwebbl_ext=kwebbl_ext, c2c=c2c))
        env = Environment()
        env.set({
            "DATABASE_URL": fresh_database("sqlite", tmp), "REDIS_URL": redis_server.url,
            "MAPPINGS_DIR": str(mappings), "INSTANCE_DIR": str(tmp / "instance"),
            "DEFAULT_REGION": "FR", "DIAL_ALLOWED_COUNTRIES": "FR,RU",
            "KAVKOM_API_TOKEN": "kav-token", "KAVKOM_DOMAIN_UUID": DOMAIN,
            "KAVKOM_API_BASE_URL": kavkom.url,
            "KWEBBL_API_BASE_URL": kwebbl.url, "KWEBBL_ACCESS_TOKEN": kwebbl_token,
            "KAZOO_API_URL": kazoo.url, "KAZOO_ACCOUNT_ID": kazoo.account_id,
            "KAZOO_AUTH_TOKEN": "kz-token",
            "UIS_CALL_API_URL": uis.url, "UIS_ACCESS_TOKEN": "uis-token",
            "UIS_VIRTUAL_PHONE_NUMBER": "74993720692",
            "HUBSPOT_ACCESS_TOKEN": None,
        })  # fmt: skip
        from webhook_receiver.web import create_app

        app = create_app({"TESTING": True})
        try:
            yield {"client": app.test_client(), "kavkom": kavkom, "kwebbl": kwebbl,
                   "kazoo": kazoo, "uis": uis, "kwebbl_ext": kwebbl_ext, "c2c": c2c,
                   "env": env, "redis": redis_server}  # fmt: skip
        finally:
            env.restore()


def forget_dial_counts(redis_server: RedisServer) -> None:
    """Every agent's dial rate windows emptied: each test starts with its full allowance."""
    from worker.telephony.dialing import rate_keys

    client = redis.Redis.from_url(redis_server.url)
    for email in EMAILS:
        client.delete(*rate_keys(email))


@pytest.fixture(scope="module")
def platforms(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    with c2c_app(redis_server, tmp_path_factory.mktemp("c2c")) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _full_dial_allowance(redis_server: RedisServer) -> None:
    forget_dial_counts(redis_server)


def call(platforms: dict[str, Any], email: str, to: object):  # type: ignore[no-untyped-def]
    """POST /agent/call as the pages do: the agent's token in the X-Callhook-Agent header."""
    from worker.core.agent_links import create_link

    return platforms["client"].post(
        "/agent/call", json={"to": to}, headers={"X-Callhook-Agent": create_link(email)}
    )


def test_kavkom_rings_the_agents_extension_then_the_number(platforms) -> None:  # type: ignore[no-untyped-def]
    response = call(platforms, "kav@example.com", "06 12 34 56 78")
    assert response.status_code == 202, response.json
    assert response.json["platform"] == "kavkom"
    assert "+33 6 12 34 56 78" in response.json["message"]
    (placed,) = platforms["kavkom"].placed()
    assert (placed["json"]["src"], placed["json"]["destination"]) == ("901", "33612345678")


def test_kwebbl_calls_from_the_agents_extension(platforms) -> None:  # type: ignore[no-untyped-def]
    assert call(platforms, "kweb@example.com", "+33612345679").status_code == 202
    (placed,) = platforms["kwebbl"].calls
    assert placed["to"] == {"number": "+33612345679"}
    assert placed["from"] == {"extension_id": platforms["kwebbl_ext"]}


def test_kazoo_uses_the_agents_click_to_call_endpoint(platforms) -> None:  # type: ignore[no-untyped-def]
    assert call(platforms, "kaz@example.com", "+33612345680").status_code == 202
    (placed,) = platforms["kazoo"].calls
    assert placed["c2c_id"] == platforms["c2c"] and placed["extension"] == "1001"
    assert placed["route"].endswith("33612345680")


def test_uis_starts_an_employee_call(platforms) -> None:  # type: ignore[no-untyped-def]
    assert call(platforms, "uis@example.com", "+79260000123").status_code == 202
    (placed,) = platforms["uis"].calls
    assert placed["employee"]["id"] == 25 and placed["contact"] == "79260000123"


def test_refusals_reach_the_agent_as_readable_reasons(platforms) -> None:  # type: ignore[no-untyped-def]
    platforms["kavkom"].switch_rejects("901", "USER_NOT_REGISTERED")
    refused = call(platforms, "kav@example.com", "+33612345681")
    assert refused.status_code == 502
    assert refused.json["reason"] and "token" not in refused.json["reason"].lower()
    bad = call(platforms, "kav@example.com", "not a number")
    assert bad.status_code == 400 and "not a phone number" in bad.json["reason"]
    none = call(platforms, "nodial@example.com", "+33612345682")
    assert none.status_code == 409 and "not set up" in none.json["reason"]
    forged = platforms["client"].post("/agent/call?k=forged", json={"to": "+33612345683"})
    assert forged.status_code == 403


def test_a_crm_link_asks_before_dialling(platforms) -> None:  # type: ignore[no-untyped-def]
    before = len(platforms["kavkom"].requests())
    page = platforms["client"].get("/call?to=%2B33612345684")
    assert page.status_code == 200
    assert "+33 6 12 34 56 84" in page.get_data(as_text=True)
    assert len(platforms["kavkom"].requests()) == before  # a GET never places a call
    assert platforms["client"].get("/call?to=12").status_code == 400


def sent_to_platforms(platforms: dict[str, Any]) -> int:
    return sum(len(platforms[name].requests()) for name in ("kavkom", "kwebbl", "kazoo", "uis"))


@pytest.mark.parametrize("path", ["/agent/call", "/agent/contact"])
@pytest.mark.parametrize(
    "raw", ['["+33612345678"]', '"+33612345678"', "33612345678", "null", "{not json"]
)
def test_a_body_that_is_not_a_json_object_is_a_400_with_the_reason(  # type: ignore[no-untyped-def]
    platforms, path: str, raw: str
) -> None:
    from worker.core.agent_links import create_link

    before = sent_to_platforms(platforms)
    response = platforms["client"].post(
        path, data=raw, content_type="application/json",
        headers={"X-Callhook-Agent": create_link("kav@example.com")},
    )  # fmt: skip
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json["error"] == "bad_body"
    assert "JSON object" in response.json["reason"]
    assert sent_to_platforms(platforms) == before


@pytest.mark.parametrize(("path", "field"), [("/agent/call", "to"), ("/agent/contact", "number")])
def test_fields_must_be_short_strings(platforms, path: str, field: str) -> None:  # type: ignore[no-untyped-def]
    from worker.core.agent_links import create_link

    headers = {"X-Callhook-Agent": create_link("kav@example.com")}
    before = sent_to_platforms(platforms)
    numeric = platforms["client"].post(path, json={field: 33612345678}, headers=headers)
    assert numeric.status_code == 400 and numeric.json["error"] == "bad_field"
    assert "must be a string" in numeric.json["reason"]
    huge = platforms["client"].post(path, json={field: "6" * 5000}, headers=headers)
    assert huge.status_code == 400 and huge.json["error"] == "too_long"
    assert "5000 characters" in huge.json["reason"] and len(huge.json["reason"]) < 200
    assert sent_to_platforms(platforms) == before


def test_the_token_is_read_from_the_header_and_still_from_a_link(platforms) -> None:  # type: ignore[no-untyped-def]
    from worker.core.agent_links import create_link

    client = platforms["client"]
    forged = client.post("/agent/call", json={"to": "+33612345685"},
                         headers={"X-Callhook-Agent": "forged"})  # fmt: skip
    assert forged.status_code == 403 and "invalid" in forged.json["reason"]
    link = create_link("kweb@example.com")
    # Pages opened before the header existed still send ?k=: it keeps working.
    assert client.post(f"/agent/call?k={link}", json={"to": "+33612345686"}).status_code == 202


def test_token_bearing_answers_are_never_cached(platforms) -> None:  # type: ignore[no-untyped-def]
    from worker.core.agent_links import create_link

    client = platforms["client"]
    headers = {"X-Callhook-Agent": create_link("kweb@example.com")}
    answers = {
        "placed": client.post("/agent/call", json={"to": "+33612345687"}, headers=headers),
        "refused": client.post("/agent/call", json={"to": "12"}, headers=headers),
        "forged": client.post("/agent/call", json={"to": "+33612345688"}),
        "bad body": client.post("/agent/contact", json=[], headers=headers),
        "call page": client.get("/call?to=%2B33612345689"),
        "call page refused": client.get("/call?to=12"),
        "token": client.post("/agent/token", headers=headers),
        "page": client.get(f"/agent?k={headers['X-Callhook-Agent']}"),
        "bad link": client.get("/agent?k=forged"),
        "widget": client.get("/hubspot/widget"),
        "widget me": client.get("/hubspot/widget/me", headers=headers),
        "widget me refused": client.get("/hubspot/widget/me"),
    }
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses == {
        "placed": 202, "refused": 400, "forged": 403, "bad body": 400, "call page": 200,
        "call page refused": 400, "token": 200, "page": 200, "bad link": 403, "widget": 200,
        "widget me": 200, "widget me refused": 403,
    }  # fmt: skip
    assert {name: r.headers.get("Cache-Control") for name, r in answers.items()} == {
        name: "no-store" for name in answers
    }
