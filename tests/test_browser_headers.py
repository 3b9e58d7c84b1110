"""Security headers on every answer: CSP with frame-ancestors, no referrer, no caching.

The browser tests (agent page, HubSpot widget) run under this policy, which shows the
pages still work with it; these tests show what the policy says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Environment, base_env, fresh_database
from worker.core.agent_links import create_link


@pytest.fixture(scope="module")
def client(redis_server, tmp_path_factory) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    tmp = tmp_path_factory.mktemp("headers")
    env = base_env(fresh_database("sqlite", tmp), redis_server.url, tmp / "instance", None)
    environment = Environment()
    environment.set({**env, "HUBSPOT_ACCESS_TOKEN": None})
    yield create_app({"TESTING": True}).test_client()
    environment.restore()


def csp(response: Any) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_agent_page_cannot_be_framed_and_runs_only_its_own_scripts(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get(f"/agent?k={create_link('alice@example.com')}")
    assert page.status_code == 200
    policy = csp(page)
    assert policy["frame-ancestors"] == "'none'"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert policy["default-src"] == "'none'"
    nonce = re.search(r"'nonce-([^']+)'", policy["script-src"]).group(1)  # type: ignore[union-attr]
    scripts = re.findall(r"<script([^>]*)>", page.get_data(as_text=True))
    assert scripts and all(f'nonce="{nonce}"' in s or "src=" in s for s in scripts)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    # A new nonce for every answer.
    again = csp(client.get(f"/agent?k={create_link('alice@example.com')}"))
    assert again["script-src"] != policy["script-src"]


def test_only_hubspot_may_frame_the_calling_widget(client) -> None:  # type: ignore[no-untyped-def]
    widget = client.get("/hubspot/widget")
    assert csp(widget)["frame-ancestors"] == "https://app.hubspot.com https://*.hubspot.com"
    assert "X-Frame-Options" not in widget.headers


def test_every_answer_is_uncached_and_unsniffed_static_files_aside(client) -> None:  # type: ignore[no-untyped-def]
    for answer in (
        client.post("/webhooks/kavkom", json={}),  # 401, JSON
        client.get("/dry-run"),  # 401
        client.get("/healthz"),
    ):
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    static = client.get("/static/agent_client.js")
    static.close()  # a file response
    assert static.status_code == 200
    assert static.headers.get("Cache-Control") != "no-store"


def test_frame_origins_are_checked_at_start_up() -> None:
    from pydantic import ValidationError

    from worker.core.settings import Settings

    with pytest.raises(ValidationError, match="list origins"):
        Settings(hubspot_frame_origins="javascript:alert(1)")
    assert (
        Settings(
            hubspot_frame_origins="https://app-eu1.hubspot.com, https://*.hubspot.com"
        ).hubspot_frame_origins
        == "https://app-eu1.hubspot.com https://*.hubspot.com"
    )
