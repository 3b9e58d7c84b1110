"""Agent links over HTTP: renewal before expiry, clear refusals after it, streams per agent.

An open page renews its token through ``POST /agent/token`` (the token in the
X-Callhook-Agent header), so a page in daily use never meets its link's expiry; an expired
or revoked link is refused with a reason that tells the agent to ask for a new one. One
agent (or one leaked link) cannot take every stream slot of a web process.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import requests

from tests.conftest import ROOT, Environment, EventStream, LiveServer, RedisServer, wait_until
from tests.conftest import fresh_database as new_database

AGENTS = """
kind: agents
agents:
  - email: cap@example.com
    name: Cappy Tabs
    auto_open: true
    extensions: {kavkom: ["2001"]}
  - email: other@example.com
    extensions: {kavkom: ["2002"]}
  - email: renew@example.com
    name: Renée Wal
    extensions: {kavkom: ["2003"]}
"""
HEADER = "X-Callhook-Agent"


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("agent-links")
    mappings = tmp / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    (mappings / "agents.yaml").write_text(AGENTS)
    env = Environment()
    env.set({
        "DATABASE_URL": new_database("sqlite", tmp), "REDIS_URL": redis_server.url,
        "MAPPINGS_DIR": str(mappings), "INSTANCE_DIR": str(tmp / "instance"),
        "DEFAULT_REGION": "FR", "HUBSPOT_ACCESS_TOKEN": None, "AGENT_LINK_TTL_DAYS": "30",
        # The process-wide cap is tests/test_screen_pop.py's; this module checks the agent's.
        "WEB_THREADS": "1000", "AGENT_STREAMS_PER_AGENT": "2",
    })  # fmt: skip
    live = LiveServer()
    yield live.url
    live.close()
    env.restore()


def set_expiry(token: str, expires_at: datetime) -> None:
    """Age a link, as the passing of days would."""
    from worker.core.agent_links import holder
    from worker.core.db import session_scope
    from worker.core.models import AgentLink

    found = holder(token)
    assert found is not None
    with session_scope() as session:
        link = session.get(AgentLink, found.link_id)
        assert link is not None
        link.expires_at = expires_at
        session.add(link)


def renewal(server: str, token: str) -> requests.Response:
    return requests.post(f"{server}/agent/token", headers={HEADER: token}, timeout=10)


def test_a_young_token_is_kept_and_one_past_half_its_lifetime_is_renewed(server: str) -> None:
    from worker.core.agent_links import create_link, holder
    from worker.core.models import utcnow

    token = create_link("renew@example.com")
    young = renewal(server, token)
    assert young.status_code == 200, young.text
    assert young.headers["Cache-Control"] == "no-store"
    body = young.json()
    assert body["token"] == token  # no new link row for every page load
    assert body["agent"] == {"email": "renew@example.com", "name": "Renée Wal", "auto_open": False}
    assert 14.9 * 86400 < body["renew_in_s"] <= 15 * 86400  # half of AGENT_LINK_TTL_DAYS
    assert datetime.fromisoformat(body["expires_at"]) > utcnow() + timedelta(days=29)

    set_expiry(token, utcnow() + timedelta(days=10))  # 20 of its 30 days have passed
    old = renewal(server, token)
    assert old.status_code == 200, old.text
    fresh = old.json()
    assert fresh["token"] != token
    assert datetime.fromisoformat(fresh["expires_at"]) > utcnow() + timedelta(days=29)
    assert fresh["renew_in_s"] > 14 * 86400
    renewed = holder(fresh["token"])
    assert renewed is not None and renewed.email == "renew@example.com"
    # The old token holds until its own expiry: another tab may still use it.
    assert holder(token) is not None
    stream = EventStream(f"{server}/agent/stream", headers={HEADER: fresh["token"]})
    assert stream.status == 200
    stream.close()


def test_an_expired_link_is_refused_with_the_reason_to_ask_for_a_new_one(server: str) -> None:
    from worker.core.agent_links import create_link
    from worker.core.models import utcnow

    token = create_link("renew@example.com")
    set_expiry(token, utcnow() - timedelta(minutes=1))
    refused = renewal(server, token)
    assert refused.status_code == 403
    assert refused.headers["Cache-Control"] == "no-store"
    reason = refused.json()["reason"]
    assert "expired on" in reason and "ask your admin for a new link" in reason
    stream = EventStream(f"{server}/agent/stream", headers={HEADER: token})
    assert stream.status == 403 and json.loads(stream.body)["reason"] == reason
    page = requests.get(f"{server}/agent?k={token}", timeout=10)
    assert page.status_code == 403 and "expired on" in page.text  # the page shows why


def test_revoked_forged_and_missing_tokens_are_refused_each_with_its_reason(server: str) -> None:
    from worker.core.agent_links import create_link, revoke

    token = create_link("other@example.com")
    revoke("other@example.com")
    assert "was revoked; ask your admin" in renewal(server, token).json()["reason"]
    forged = renewal(server, "eyJsIjoxfQ.forged-signature")
    assert forged.status_code == 403 and "invalid" in forged.json()["reason"]
    # The header only: a token in this URL would land in access logs.
    in_url = requests.post(f"{server}/agent/token?k={create_link('other@example.com')}", timeout=10)
    assert in_url.status_code == 403 and "no agent link" in in_url.json()["reason"]


def test_one_agent_cannot_take_every_stream_slot(server: str) -> None:
    from webhook_receiver.web.agent_page import open_streams
    from worker.core.agent_links import create_link, revoke

    token = create_link("cap@example.com")
    url = f"{server}/agent/stream"
    held = [EventStream(url, headers={HEADER: token}) for _ in range(2)]  # the agent's cap
    assert [s.status for s in held] == [200, 200]
    extra = EventStream(url, headers={HEADER: token})
    assert extra.status == 429
    assert extra.response.getheader("Retry-After") == "20"
    assert extra.response.getheader("Cache-Control") == "no-store"
    body = json.loads(extra.body)
    assert body["error"] == "too_many_pages" and "2 callhook pages open" in body["reason"]
    # Another agent still connects.
    other = EventStream(url, headers={HEADER: create_link("other@example.com")})
    assert other.status == 200
    other.close()

    # Revoked while open: each page hears why at the stream's next heartbeat, and the
    # streams' slots come back (a revoked link must not hold them either).
    revoke("cap@example.com")
    for stream in held:
        event = stream.next_event(timeout=30)
        assert event["event"] == "revoked"
        assert "was revoked; ask your admin" in json.loads(event["data"])["reason"]
    wait_until(lambda: open_streams("cap@example.com") == 0, timeout=10)
    for stream in held:
        stream.close()
    again = EventStream(url, headers={HEADER: create_link("cap@example.com")})
    assert again.status == 200
    again.close()


def test_the_agent_page_loads_without_a_token_in_its_address(server: str) -> None:
    # Reloads and bookmarks hit /agent without ?k=: the page loads and uses the token the
    # browser kept (tests/test_agent_page_browser.py drives that part).
    page = requests.get(f"{server}/agent", timeout=10)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "agent_client.js" in page.text
    from worker.core.agent_links import create_link

    token = create_link("cap@example.com")
    named = requests.get(f"{server}/agent?k={token}", timeout=10)
    assert named.status_code == 200 and "Cappy Tabs" in named.text
