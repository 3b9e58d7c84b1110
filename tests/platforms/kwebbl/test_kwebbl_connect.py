"""Connecting Kwebbl (OAuth 2), keeping its token fresh, and managing the subscription.

Everything runs for real: the Flask app (with the connect blueprint registered), the
``callhook kwebbl`` commands through click's runner, the database (SQLite, and PostgreSQL
with ``TEST_DATABASE_URL``), Redis, and ``FakeKwebbl`` (tests/platforms/kwebbl/fake_api.py)
over HTTP, whose authorization server rotates token pairs as the Realtime API document
says: a refresh invalidates the previous pair, so a second refresh with the same refresh
token is refused.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests
import sqlalchemy as sa
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.conftest import ROOT, Environment, RedisServer, fresh_database
from tests.platforms.kwebbl.fake_api import FakeKwebbl
from webhook_receiver.cli.kwebbl import kwebbl
from webhook_receiver.web.kwebbl_connect import STATE_COOKIE
from worker.telephony import kwebbl_oauth
from worker.telephony.kwebbl_oauth import KwebblAuthError, OAuthTokens, access_token

PUBLIC = "https://callhook.example.com"
CALLBACK = f"{PUBLIC}/connect/kwebbl/callback"
SECRET_KEY = "kwebbl-connect-tests-signing-key"
WEBHOOK_SECRET = "first-kwebbl-secret"
AGENTS = """
kind: agents
agents:
  - email: kweb@example.com
    extensions: {kwebbl: ["010"]}
"""


@pytest.fixture(scope="module")
def setup(
    db_kind: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp(f"kwebbl-connect-{db_kind}")
    mappings = tmp / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    (mappings / "agents.yaml").write_text(AGENTS)
    return {"db": fresh_database(db_kind, tmp), "mappings": mappings, "tmp": tmp}


@dataclass
class Kw:
    fake: FakeKwebbl
    client: FlaskClient
    env: Environment
    base_env: dict[str, str | None]

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(kwebbl, list(args), catch_exceptions=False)


@pytest.fixture
def kw(setup: dict[str, Any], redis_server: RedisServer) -> Iterator[Kw]:
    with FakeKwebbl(redirect_uri=CALLBACK) as fake:
        fake.add_extension("010")
        values: dict[str, str | None] = {
            "DATABASE_URL": setup["db"],
            "REDIS_URL": redis_server.url,
            "MAPPINGS_DIR": str(setup["mappings"]),
            "INSTANCE_DIR": str(setup["tmp"] / "instance"),
            "DEFAULT_REGION": "FR",
            # Kwebbl is Dutch: its click-to-call tests dial a Dutch number.
            "DIAL_ALLOWED_COUNTRIES": "FR,NL",
            # Its tests dial often for one agent; the rate limit has tests of its own.
            "DIAL_MAX_PER_MINUTE": "1000",
            "DIAL_MAX_PER_HOUR": "10000",
            "SECRET_KEY": SECRET_KEY,
            "PUBLIC_BASE_URL": PUBLIC,
            "KWEBBL_CLIENT_ID": fake.client_id,
            "KWEBBL_CLIENT_SECRET": fake.client_secret,
            "KWEBBL_AUTH_BASE_URL": fake.auth_url,
            "KWEBBL_API_BASE_URL": fake.url,
            "KWEBBL_ACCESS_TOKEN": None,
            # Two secrets, comma-separated (rotation): subscriptions carry the first.
            "KWEBBL_WEBHOOK_SECRET": f"{WEBHOOK_SECRET},older-kwebbl-secret",
            "HUBSPOT_ACCESS_TOKEN": None,
        }
        env = Environment()
        env.set(values)
        from webhook_receiver.web import create_app
        from worker.core.db import get_engine

        with get_engine().begin() as conn:
            conn.execute(sa.text("DELETE FROM platform_credentials"))
        redis.Redis.from_url(redis_server.url).delete(kwebbl_oauth.LOCK_NAME)
        app = create_app({"TESTING": True})
        try:
            yield Kw(fake, app.test_client(), env, values)
        finally:
            env.restore()


# -- helpers --------------------------------------------------------------------------------------
def local(url: str) -> str:
    """The path and query of one of callhook's URLs, for the Flask test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def start_link(kw: Kw) -> str:
    result = kw.cli("connect-link")
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith(f"{PUBLIC}/connect/kwebbl?k=")
    return link


def sign_in(kw: Kw, client: FlaskClient | None = None) -> str:
    """The admin opens the link, Kwebbl consents at once: returns the callback URL."""
    client = client or kw.client
    started = client.get(local(start_link(kw)))
    assert started.status_code == 302, started.get_data(as_text=True)
    at_kwebbl = requests.get(started.headers["Location"], allow_redirects=False, timeout=5)
    assert at_kwebbl.status_code == 302, at_kwebbl.text
    return at_kwebbl.headers["Location"]


def connect(kw: Kw) -> None:
    done = kw.client.get(local(sign_in(kw)))
    assert done.status_code == 200, done.get_data(as_text=True)


def stored_row() -> dict[str, Any] | None:
    from worker.core.db import get_engine

    with get_engine().begin() as conn:
        row = conn.execute(sa.text("SELECT * FROM platform_credentials")).mappings().first()
    return dict(row) if row is not None else None


def basic(fake: FakeKwebbl) -> str:
    return "Basic " + base64.b64encode(f"{fake.client_id}:{fake.client_secret}".encode()).decode()


def old_signature(salt: str, value: Any, age_s: int) -> str:
    """A value signed with callhook's key and salt, ``age_s`` seconds ago."""

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_s

    return str(URLSafeTimedSerializer(SECRET_KEY, salt=salt, signer=Past).dumps(value))


# -- connecting -----------------------------------------------------------------------------------
def test_the_admin_link_connects_kwebbl_and_the_tokens_are_stored_encrypted(
    kw: Kw, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    started = kw.client.get(local(start_link(kw)))

    # Off to Kwebbl's /authorize with what the document lists ("Redirect the user").
    assert started.status_code == 302
    location = urlsplit(started.headers["Location"])
    assert (
        f"{location.scheme}://{location.netloc}{location.path}" == f"{kw.fake.auth_url}/authorize"
    )
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == kw.fake.client_id
    assert query["redirect_uri"] == CALLBACK
    assert query["scope"] == "calls.events calls.create company.users"
    # The state is bound to this browser: the cookie holds the nonce it signs.
    cookie = started.headers["Set-Cookie"]
    assert cookie.startswith(f"{STATE_COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Path=/connect/kwebbl" in cookie
    nonce = kw.client.get_cookie(STATE_COOKIE, path="/connect/kwebbl").value
    assert nonce and nonce not in query["state"]

    # Kwebbl consents and sends the browser back with the code and the same state.
    at_kwebbl = requests.get(started.headers["Location"], allow_redirects=False, timeout=5)
    back = urlsplit(at_kwebbl.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    assert parse_qs(back.query)["state"] == [query["state"]]
    done = kw.client.get(local(at_kwebbl.headers["Location"]))

    page = done.get_data(as_text=True)
    assert done.status_code == 200, page
    assert "Kwebbl is connected" in page and "callhook kwebbl subscribe" in page
    assert kw.client.get_cookie(STATE_COOKIE, path="/connect/kwebbl") is None  # used up
    # POST /token: JSON body, client credentials in the Basic header and only there.
    (exchange,) = kw.fake.token_requests()
    assert exchange["headers"]["Authorization"] == basic(kw.fake)
    assert exchange["headers"]["Content-Type"] == "application/json"
    assert exchange["json"] == {
        "grant_type": "authorization_code",
        "code": parse_qs(back.query)["code"][0],
        "redirect_uri": CALLBACK,
    }
    # Stored sealed: the database holds neither token in clear.
    pair = kw.fake.current
    row = stored_row()
    assert row is not None and (row["platform"], row["status"]) == ("kwebbl", "connected")
    assert pair["access_token"] not in row["access_token"]
    assert pair["refresh_token"] not in row["refresh_token"]
    assert pair["refresh_token"] not in json.dumps(row, default=str)
    assert row["scope"] == "calls.events calls.create company.users"
    assert access_token() == pair["access_token"]
    assert len(kw.fake.token_requests()) == 1  # 900 s left: no refresh needed
    # Nothing secret reached callhook's log (werkzeug's lines are the fake's access log).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("callhook"))
    for secret in (
        pair["access_token"],
        pair["refresh_token"],
        kw.fake.client_secret,
        parse_qs(back.query)["code"][0],
        query["state"],
    ):
        assert secret not in logged
    assert "kwebbl.connected" in logged
    # The same callback again (a reload, a replay from history) connects nothing.
    replay = kw.client.get(local(at_kwebbl.headers["Location"]))
    assert replay.status_code == 400 and len(kw.fake.token_requests()) == 1


def test_the_fake_token_endpoint_keeps_the_seeds_rules(kw: Kw) -> None:
    """The fake refuses what the document refuses, so the tests above prove something."""
    connect(kw)
    pair = kw.fake.current
    token_url = f"{kw.fake.auth_url}/token"
    auth = (kw.fake.client_id, kw.fake.client_secret)
    refresh = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    both = requests.post(
        token_url,
        json={**refresh, "client_id": auth[0], "client_secret": auth[1]},
        auth=auth,
        timeout=5,
    )
    assert (both.status_code, both.json()["error"]) == (400, "invalid_request")
    wrong = requests.post(token_url, json=refresh, auth=(auth[0], "wrong"), timeout=5)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert "invalid_client" in wrong.headers["WWW-Authenticate"]
    form = requests.post(token_url, data=refresh, auth=auth, timeout=5)
    assert (form.status_code, form.json()["error"]) == (400, "invalid_request")
    assert kw.fake.is_valid(pair["access_token"])  # none of those spent anything

    renewed = requests.post(token_url, json=refresh, auth=auth, timeout=5)
    assert renewed.status_code == 200 and renewed.json()["token_type"] == "Bearer"
    assert not kw.fake.is_valid(pair["access_token"])  # the previous pair is invalidated
    reused = requests.post(token_url, json=refresh, auth=auth, timeout=5)
    assert (reused.status_code, reused.json()["error"]) == (401, "invalid_grant")


def test_status_never_shows_a_token(kw: Kw) -> None:
    before = kw.cli("status")
    assert before.exit_code == 1 and "not connected" in before.output
    assert f"{PUBLIC}/connect/kwebbl" in before.output

    connect(kw)

    after = kw.cli("status")
    assert after.exit_code == 0, after.output
    assert "Kwebbl: connected" in after.output
    assert "calls.events calls.create company.users" in after.output
    assert "expires" in after.output
    for secret in (kw.fake.current["access_token"], kw.fake.current["refresh_token"]):
        assert secret not in after.output


def test_the_connect_page_needs_a_fresh_admin_link(kw: Kw) -> None:
    link = start_link(kw)
    token = parse_qs(urlsplit(link).query)["k"][0]
    expired = old_signature(kwebbl_oauth.CONNECT_LINK_SALT, {"purpose": "kwebbl-connect"}, 31 * 60)
    # A state is signed with the same key, for another purpose: not an admin link.
    state, _ = kwebbl_oauth.new_state()
    for k in ("", "forged", token[:-2] + "xx", expired, state):
        page = kw.client.get(f"/connect/kwebbl?k={k}")
        assert page.status_code == 403
        assert "callhook kwebbl connect-link" in page.get_data(as_text=True)
        assert kw.client.get_cookie(STATE_COOKIE, path="/connect/kwebbl") is None
    assert kw.fake.requests() == []
    assert kw.client.get(local(link)).status_code == 302  # within 30 minutes, it works


def test_without_the_oauth_application_nothing_starts(kw: Kw) -> None:
    link = start_link(kw)
    kw.env.set({"KWEBBL_CLIENT_SECRET": None})

    refused = kw.cli("connect-link")
    page = kw.client.get(local(link))

    assert refused.exit_code == 1 and "KWEBBL_CLIENT_SECRET must be set" in refused.output
    assert page.status_code == 500 and "KWEBBL_CLIENT_SECRET" in page.get_data(as_text=True)
    assert kw.fake.requests() == []


@pytest.mark.parametrize("case", ["other browser", "forged state", "expired state", "no state"])
def test_a_callback_that_is_not_this_browsers_sign_in_is_refused(kw: Kw, case: str) -> None:
    callback = sign_in(kw)
    query = parse_qs(urlsplit(callback).query)
    code, state = query["code"][0], query["state"][0]
    client = kw.client
    if case == "other browser":
        client = kw.client.application.test_client()  # no cookie: an attacker's link
        url = callback
    elif case == "forged state":
        url = f"/connect/kwebbl/callback?code={code}&state={state[:-3]}abc"
    elif case == "expired state":
        nonce = kw.client.get_cookie(STATE_COOKIE, path="/connect/kwebbl").value
        old = old_signature(kwebbl_oauth.STATE_SALT, nonce, 11 * 60)
        url = f"/connect/kwebbl/callback?code={code}&state={old}"
    else:
        url = f"/connect/kwebbl/callback?code={code}"

    refused = client.get(local(url) if url.startswith("http") else url)

    page = refused.get_data(as_text=True)
    assert refused.status_code == 400, page
    assert "Start again" in page and "connect-link" in page
    expected = {
        "other browser": "did not start this sign-in",
        "forged state": "not made by callhook",
        "expired state": "expired",
        "no state": "no state",
    }[case]
    assert expected in page
    assert kw.fake.token_requests() == []  # the code was never exchanged
    assert stored_row() is None


def test_another_browsers_state_is_refused_even_with_a_cookie(kw: Kw) -> None:
    mine = kw.client.application.test_client()
    sign_in(kw, client=mine)
    theirs = sign_in(kw)  # the victim's own sign-in is not the one the attacker started
    refused = mine.get(local(theirs))
    assert refused.status_code == 400
    assert "another browser" in refused.get_data(as_text=True)
    assert kw.fake.token_requests() == []


def test_a_declined_consent_shows_why_and_stores_nothing(kw: Kw) -> None:
    kw.fake.deny_next("access_denied", "The user denied access")

    callback = sign_in(kw)
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
    page = kw.client.get(local(callback))

    text = page.get_data(as_text=True)
    assert page.status_code == 403
    assert "did not grant callhook access" in text and "The user denied access" in text
    assert "connect-link" in text
    assert kw.fake.token_requests() == [] and stored_row() is None


def test_a_code_kwebbl_refuses_is_explained(kw: Kw) -> None:
    callback = sign_in(kw)
    kw.fake.fail_next(
        401, {"error": "invalid_grant", "error_description": "Code expired"}, "/token"
    )
    page = kw.client.get(local(callback))
    text = page.get_data(as_text=True)
    assert page.status_code == 502
    assert "HTTP 401 invalid_grant: Code expired" in text and "connect-link" in text
    assert stored_row() is None


# -- keeping the token fresh ----------------------------------------------------------------------
def test_a_token_about_to_expire_is_refreshed_before_use(kw: Kw) -> None:
    kw.fake.expires_in = 30  # under the 60 s margin as soon as it is stored
    connect(kw)
    first = kw.fake.current
    kw.fake.expires_in = 3600

    token = access_token()

    (refresh,) = kw.fake.token_requests("refresh_token")
    assert refresh["headers"]["Authorization"] == basic(kw.fake)
    assert refresh["json"] == {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
    }
    assert token == kw.fake.current["access_token"] != first["access_token"]
    assert kw.fake.is_valid(token) and not kw.fake.is_valid(first["access_token"])
    row = stored_row()
    assert row is not None and kw.fake.current["refresh_token"] not in row["refresh_token"]
    # Now valid for an hour: used as it is.
    assert access_token() == token == access_token()
    assert len(kw.fake.token_requests("refresh_token")) == 1


def test_threads_asking_at_once_share_one_refresh(kw: Kw) -> None:
    from worker.core.db import get_engine

    kw.fake.expires_in = 30
    connect(kw)
    kw.fake.expires_in = 3600
    kw.fake.token_delay = 0.3  # the refresh is slow: every thread arrives during it
    get_engine()
    barrier = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        barrier.wait()
        try:
            results.append(access_token())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    assert len(kw.fake.token_requests("refresh_token")) == 1
    assert set(results) == {kw.fake.current["access_token"]} and len(results) == 8
    assert kw.fake.is_valid(results[0])
    assert stored_row()["status"] == "connected"  # type: ignore[index]


PROCESS = """
import sys, threading, time
from pathlib import Path
from worker.core.db import get_engine
from worker.telephony.kwebbl_oauth import access_token
get_engine()
Path(sys.argv[1]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
out = []
def ask():
    try:
        out.append(access_token())
    except Exception as exc:
        out.append("ERROR " + repr(exc))
threads = [threading.Thread(target=ask) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
print("\\n".join(out))
"""


def test_two_processes_asking_at_once_share_one_refresh(kw: Kw, tmp_path: Path) -> None:
    kw.fake.expires_in = 30
    connect(kw)
    kw.fake.expires_in = 3600
    kw.fake.token_delay = 0.3
    go = tmp_path / "go"
    procs = []
    for n in range(2):
        ready = tmp_path / f"ready-{n}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", PROCESS, str(ready), str(go)],
                    cwd=ROOT,
                    env=dict(os.environ),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    deadline = time.monotonic() + 30
    while not all(ready.exists() for ready, _ in procs):
        assert time.monotonic() < deadline, "the processes did not start"
        time.sleep(0.02)
    go.touch()

    tokens: list[str] = []
    for _, proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        tokens += out.split()

    assert len(tokens) == 6 and set(tokens) == {kw.fake.current["access_token"]}, tokens
    assert len(kw.fake.token_requests("refresh_token")) == 1


def test_a_forced_refresh_after_a_401_is_not_repeated_once_done_elsewhere(kw: Kw) -> None:
    connect(kw)
    provider = OAuthTokens()
    handed = provider()
    # Another process met a 401 first and renewed the pair.
    renewed = access_token(force_refresh=True, rejected=handed)
    assert renewed != handed and len(kw.fake.token_requests("refresh_token")) == 1

    # Our request with the old token is refused too: we get the renewed one, no new refresh.
    assert provider(force_refresh=True) == renewed
    assert len(kw.fake.token_requests("refresh_token")) == 1


@pytest.mark.parametrize("how", ["refresh token spent elsewhere", "client secret regenerated"])
def test_a_refused_refresh_asks_for_kwebbl_to_be_connected_again(
    kw: Kw, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    kw.fake.expires_in = 30
    connect(kw)
    ours = kw.fake.current
    if how == "refresh token spent elsewhere":
        kw.fake.refresh_elsewhere()
    else:
        kw.fake.regenerate_client_secret()

    with pytest.raises(KwebblAuthError) as caught:
        access_token()

    error = caught.value
    assert error.code == "reauthorize" and not error.retryable
    assert f"connect Kwebbl again at {PUBLIC}/connect/kwebbl" in error.message
    assert (
        "invalid_grant" if how.startswith("refresh") else "KWEBBL_CLIENT_SECRET"
    ) in error.message
    text = error.message + "".join(
        r.getMessage() for r in caplog.records if r.name.startswith("callhook")
    )
    for secret in (ours["access_token"], ours["refresh_token"], kw.fake.client_secret):
        assert secret not in text
    row = stored_row()
    assert row is not None and row["status"] == "reauthorize"
    assert "Kwebbl refused the token refresh (HTTP 401" in row["error"]
    status = kw.cli("status")
    assert status.exit_code == 1
    assert "Kwebbl: reauthorize" in status.output and "HTTP 401" in status.output
    assert f"connect Kwebbl again at {PUBLIC}/connect/kwebbl" in status.output

    # Asked again: the same answer, without spending anything at Kwebbl.
    before = len(kw.fake.requests())
    with pytest.raises(KwebblAuthError, match="connect Kwebbl again"):
        access_token()
    assert len(kw.fake.requests()) == before

    # Connecting again repairs it.
    if how == "client secret regenerated":
        kw.env.set({"KWEBBL_CLIENT_SECRET": kw.fake.client_secret})
    kw.fake.expires_in = 3600
    connect(kw)
    assert access_token() == kw.fake.current["access_token"]
    assert kw.cli("status").exit_code == 0


def test_tokens_sealed_with_another_secret_key_ask_for_reconnection(kw: Kw) -> None:
    connect(kw)
    kw.env.set({"SECRET_KEY": "a-different-key-for-this-test-only-0123"})

    with pytest.raises(KwebblAuthError) as caught:
        access_token()

    assert caught.value.code == "unreadable"
    assert "SECRET_KEY changed" in caught.value.message
    assert f"connect Kwebbl again at {PUBLIC}/connect/kwebbl" in caught.value.message
    status = kw.cli("status")
    assert status.exit_code == 1 and "Kwebbl: unreadable" in status.output
    # The row is left alone: a process with the right key still works.
    kw.env.set({"SECRET_KEY": SECRET_KEY})
    assert access_token() == kw.fake.current["access_token"]


# -- the subscription -----------------------------------------------------------------------------
def test_subscribe_list_and_unsubscribe(kw: Kw) -> None:
    connect(kw)
    token = kw.fake.current["access_token"]

    made = kw.cli("subscribe")

    assert made.exit_code == 0, made.output
    (subscription,) = kw.fake.subscriptions.values()
    assert subscription["callback_url"] == f"{PUBLIC}/webhooks/kwebbl?token={WEBHOOK_SECRET}"
    assert (subscription["event_types"], subscription["mode"]) == (["*"], "detailed")
    (post,) = [
        r for r in kw.fake.requests() if r["method"] == "POST" and "subscriptions" in r["path"]
    ]
    assert post["headers"]["Authorization"] == f"Bearer {token}"
    assert post["json"] == {
        "event_types": ["*"],
        "mode": "detailed",
        "callback_url": subscription["callback_url"],
    }
    assert subscription["id"] in made.output and WEBHOOK_SECRET not in made.output
    assert f"{PUBLIC}/webhooks/kwebbl?token=***" in made.output

    # Subscribing again creates nothing: Kwebbl would send every event twice.
    again = kw.cli("subscribe")
    assert again.exit_code == 0 and "already subscribed" in again.output
    assert len(kw.fake.subscriptions) == 1

    # Someone else's subscription is listed too, masked as well.
    kw.fake.subscriptions["b" * 32] = {
        "id": "b" * 32,
        "events": ["created"],
        "callback_url": "https://other.example/hook?token=s3cr3t",
    }
    listed = kw.cli("subscriptions")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    ours = next(line for line in lines if line.startswith(subscription["id"]))
    assert "events=*" in ours and "mode=detailed" in ours and "this callhook" in ours
    other = next(line for line in lines if line.startswith("b" * 32))
    assert "events=created" in other and "mode=presence" in other and "this callhook" not in other
    assert WEBHOOK_SECRET not in listed.output and "s3cr3t" not in listed.output

    gone = kw.cli("unsubscribe", subscription["id"])
    assert gone.exit_code == 0 and f"cancelled: {subscription['id']}" in gone.output
    assert list(kw.fake.subscriptions) == ["b" * 32]

    missing = kw.cli("unsubscribe", subscription["id"])
    assert missing.exit_code == 1
    assert f"Kwebbl has no subscription {subscription['id']}" in missing.output
    assert "entity_not_exist" in missing.output
    assert kw.cli("unsubscribe", "../calls").exit_code == 1


@pytest.mark.parametrize("unset", ["PUBLIC_BASE_URL", "KWEBBL_WEBHOOK_SECRET"])
def test_subscribe_refuses_without_a_public_url_or_a_secret(kw: Kw, unset: str) -> None:
    connect(kw)
    kw.env.set({unset: None})

    refused = kw.cli("subscribe")

    assert refused.exit_code == 1
    assert f"{unset} is not set" in refused.output
    assert kw.fake.subscriptions == {}
    assert not [r for r in kw.fake.requests() if "subscriptions" in r["path"]]


def test_subscription_commands_say_when_kwebbl_is_not_connected(kw: Kw) -> None:
    refused = kw.cli("subscriptions")
    assert refused.exit_code == 1
    assert f"connect it at {PUBLIC}/connect/kwebbl" in refused.output
    assert kw.fake.requests() == []


def test_a_refused_token_is_renewed_once_for_the_subscription_api(kw: Kw) -> None:
    connect(kw)
    stale = kw.fake.current["access_token"]
    kw.fake.revoke(stale)  # Kwebbl ended it early: 401 invalid_grant

    listed = kw.cli("subscriptions")

    assert listed.exit_code == 0, listed.output
    first, refresh, second = kw.fake.requests()[-3:]
    assert (first["status"], refresh["path"], second["status"]) == (401, "/token", 200)
    assert second["headers"]["Authorization"] == f"Bearer {kw.fake.current['access_token']}"


def test_a_scope_without_calls_events_is_explained(kw: Kw) -> None:
    kw.env.set({"KWEBBL_SCOPES": "calls.create"})
    connect(kw)
    refused = kw.cli("subscribe")
    assert refused.exit_code == 1
    assert "calls.events" in refused.output and "access_denied" in refused.output


# -- click-to-call --------------------------------------------------------------------------------
def place(kw: Kw) -> Any:
    from worker.core.agent_links import create_link

    return kw.client.post(
        f"/agent/call?k={create_link('kweb@example.com')}", json={"to": "+31203080700"}
    )


def test_click_to_call_uses_the_oauth_token_and_renews_it_on_a_401(kw: Kw) -> None:
    kw.env.set({"KWEBBL_ACCESS_TOKEN": "a-static-token-that-loses"})
    connect(kw)
    first = kw.fake.current["access_token"]

    placed = place(kw)

    assert placed.status_code == 202, placed.json
    (call,) = [r for r in kw.fake.requests() if r["path"] == "/v100/calls"]
    assert call["headers"]["Authorization"] == f"Bearer {first}"
    assert kw.fake.calls == [{"from": {"number": "010"}, "to": {"number": "+31203080700"}}]

    kw.fake.revoke(first)
    again = place(kw)

    assert again.status_code == 202, again.json
    refused, retried = [r for r in kw.fake.requests() if r["path"] == "/v100/calls"][1:]
    assert refused["status"] == 401 and retried["status"] == 202
    assert retried["headers"]["Authorization"] == f"Bearer {kw.fake.current['access_token']}"
    assert len(kw.fake.token_requests("refresh_token")) == 1
    assert len(kw.fake.calls) == 2


def test_click_to_call_falls_back_to_the_static_token_and_then_asks_to_reconnect(kw: Kw) -> None:
    static = kw.fake.issue_token(owner=next(iter(kw.fake.extensions)))
    kw.env.set({"KWEBBL_ACCESS_TOKEN": static})
    assert place(kw).status_code == 202  # never connected: KWEBBL_ACCESS_TOKEN as before
    assert kw.fake.requests()[-1]["headers"]["Authorization"] == f"Bearer {static}"

    kw.fake.expires_in = 30
    connect(kw)
    kw.fake.refresh_elsewhere()
    kw.env.set({"KWEBBL_ACCESS_TOKEN": None})

    refused = place(kw)

    assert refused.status_code == 502
    assert refused.json["error"] == "reauthorize"
    assert f"connect Kwebbl again at {PUBLIC}/connect/kwebbl" in refused.json["reason"]
    assert len(kw.fake.calls) == 1
