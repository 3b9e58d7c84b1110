"""Operator pages need a sign-in: a signed, expiring, revocable link that becomes a cookie.

The dry-run page is the first page behind it (it shows callers' numbers and call
bodies); the operator console will be built on the same sign-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlmodel import select

from tests.conftest import Environment, base_env, fresh_database
from webhook_receiver.web.operator_auth import COOKIE


@pytest.fixture(scope="module")
def app(db_kind, redis_server, tmp_path_factory) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    tmp = tmp_path_factory.mktemp(f"operator-{db_kind}")
    env = base_env(fresh_database(db_kind, tmp), redis_server.url, tmp / "instance", None)
    environment = Environment()
    environment.set({**env, "HUBSPOT_ACCESS_TOKEN": None, "HUBSPOT_BASE_URL": None})
    yield create_app({"TESTING": True})
    environment.restore()


def cli(*args: str) -> str:
    from webhook_receiver.cli.main import cli as group

    result = CliRunner().invoke(group, list(args))
    assert result.exit_code == 0, result.output
    return result.output.strip()


def sign_in_path(email: str = "ops@example.com") -> str:
    link = cli("admin", "link", email)
    assert link.startswith("http://127.0.0.1:5000/admin/signin?t=")
    return link.removeprefix("http://127.0.0.1:5000")


def test_dry_run_page_refuses_anyone_not_signed_in(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    as_api = client.get("/dry-run")
    assert as_api.status_code == 401
    assert as_api.get_json()["error"] == "sign_in_required"
    as_browser = client.get("/dry-run", headers={"Accept": "text/html"})
    assert as_browser.status_code == 401
    assert "callhook admin link" in as_browser.get_data(as_text=True)
    # What Chromium sends when the operator opens the page: HTML first, */* after.
    chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8"
    page = client.get("/admin/calls", headers={"Accept": chromium})
    assert page.status_code == 401 and page.mimetype == "text/html"
    assert client.get("/admin/calls", headers={"Accept": "*/*"}).mimetype == "application/json"
    # An agent's link is not an operator's.
    agent_token = cli("agents", "link", "alice@example.com").split("?k=", 1)[1]
    client.set_cookie(COOKIE, agent_token)
    assert client.get("/dry-run").status_code == 401
    assert client.get(f"/admin/signin?t={agent_token}").status_code == 403


def test_sign_in_link_becomes_a_cookie_and_leaves_the_address_bar(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    answer = client.get(sign_in_path() + "&next=/dry-run")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/dry-run"  # no token in the URL it lands on
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/dry-run").status_code == 200
    home = client.get("/admin")
    assert home.status_code == 200 and "ops@example.com" in home.get_data(as_text=True)


def test_sign_in_never_redirects_off_site(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "evil"):
        answer = client.get(sign_in_path() + "&next=" + target)
        assert answer.headers["Location"] == "/admin", target


def test_dry_run_limit_is_checked(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.get(sign_in_path())
    for bad in ("abc", "0", "-1", "1001", "9" * 5000, "١٢"):
        answer = client.get(f"/dry-run?limit={bad}")
        assert answer.status_code == 400, bad
        assert "limit" in answer.get_json()["reason"]
    assert client.get("/dry-run?limit=5").status_code == 200


def test_revoked_or_expired_sign_in_signs_out_at_the_next_click(app) -> None:  # type: ignore[no-untyped-def]
    from worker.core.db import session_scope
    from worker.core.models import AgentLink, utcnow

    client = app.test_client()
    client.get(sign_in_path("gone@example.com"))
    assert client.get("/dry-run").status_code == 200
    assert cli("admin", "revoke", "gone@example.com") == (
        "revoked 1 sign-in link(s) of gone@example.com"
    )
    assert client.get("/dry-run").status_code == 401

    client = app.test_client()
    path = sign_in_path("late@example.com")
    client.get(path)
    assert client.get("/dry-run").status_code == 200
    with session_scope() as session:
        for link in session.exec(select(AgentLink).where(AgentLink.email == "late@example.com")):
            link.expires_at = utcnow() - timedelta(seconds=1)
            session.add(link)
    assert client.get("/dry-run").status_code == 401
    assert app.test_client().get(path).status_code == 403


def test_operator_posts_must_come_from_this_site(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.get(sign_in_path())
    cross = client.post("/admin/signout", headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert client.get("/dry-run").status_code == 200  # still signed in
    same = client.post("/admin/signout", headers={"Origin": "http://localhost"})
    assert same.status_code == 303
    assert client.get("/dry-run").status_code == 401


def test_operator_link_lifetime_follows_the_setting(app) -> None:  # type: ignore[no-untyped-def]
    from worker.core.agent_links import OPERATOR, holder
    from worker.core.models import utcnow

    token = sign_in_path("ttl@example.com").split("t=", 1)[1]
    found = holder(token, OPERATOR)
    assert found is not None
    assert timedelta(hours=11) < found.expires_at - utcnow() <= timedelta(hours=12)
