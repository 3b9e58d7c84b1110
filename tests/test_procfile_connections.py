"""Issue 6's platform connections, against a deployment started from the Procfile.

`release` migrates an empty database (SQLite, and PostgreSQL with ``TEST_DATABASE_URL``),
then the Procfile's `web`, `worker` and `listener` lines run as separate processes,
configured with environment variables only. Every outside service is a fake on localhost:
HubSpot (tests/fake_hubspot.py), Kwebbl's authorization server and Realtime API, Kavkom's
live server (acquire-access and the /calls WebSocket) and the four click-to-call APIs
(tests/platforms/<platform>/fake_api.py). An administrator or an agent acts as they would:
`callhook` commands run as processes with the deployment's environment, and the pages are
opened in headless Chromium.

What it shows:

1. Kwebbl is connected through the browser (the printed admin link, Kwebbl's consent, back
   to /connect/kwebbl/callback), and `callhook kwebbl subscribe | subscriptions |
   unsubscribe` then create, list and cancel the subscription Kwebbl holds.
2. The `listener` process turns Kavkom's ringing → active → finished messages into exactly
   one HubSpot call, and after Kavkom drops the connection a later call is logged too.
3. An agent dials from the agent page through each of Kavkom, Kwebbl (extension id and
   internal number), KAZOO and UIS; a refusal shows the platform's reason in plain words.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy as sa

from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium, screenshot  # noqa: F401
from tests.conftest import (
    ROOT,
    TOKEN,
    WEBHOOK_SECRETS,
    RedisServer,
    load_fixture,
    postgres_test_url,
    wait_until,
)
from tests.fake_hubspot import FakeHubSpot
from tests.mixed_day import Deployment
from tests.platforms.kavkom.fake_api import FakeKavkom
from tests.platforms.kavkom.fake_live import FakeKavkomLive
from tests.platforms.kazoo.fake_api import FakeKazoo
from tests.platforms.kwebbl.fake_api import FakeKwebbl
from tests.platforms.uis.fake_api import FakeUis

pytestmark = needs_chromium

WAIT_MS = 20_000
SECRET_KEY = "procfile-connections-signing-key"
KAVKOM_TOKEN = "kav-token"
KAVKOM_DOMAIN = "0b6f3c1e-5d2a-4f7b-9c8e-1a2b3c4d5e6f"
KAVKOM_REFRESH = "kavkom-refresh-token-for-procfile-tests"
LISTEN_EXTENSION = "1001"  # the fixtures' presenceId
KAZOO_ACCOUNT = "acc0123456789abcdef0123456789ab"
KAZOO_TOKEN = "kz-token"
UIS_TOKEN = "uis-token"
UIS_VIRTUAL_NUMBER = "74993720692"
# Who dials through what; kav-off's phone is not registered, so Kavkom's switch refuses.
AGENTS = """
kind: agents
agents:
  - email: kav@example.com
    extensions: {{kavkom: ["901"]}}
  - email: kav-off@example.com
    extensions: {{kavkom: ["902"]}}
  - email: kweb@example.com
    extensions: {{kwebbl: ["{kwebbl_ext}"]}}
  - email: kweb-number@example.com
    extensions: {{kwebbl: ["202"]}}
  - email: kaz@example.com
    extensions: {{kazoo: ["d860229e722bf8f738737365b0b1e333"]}}
    dial: {{platform: kazoo, id: "{c2c}"}}
  - email: uis@example.com
    dial: {{platform: uis, id: "25"}}
"""


@dataclass
class Fakes:
    kavkom: FakeKavkom
    kwebbl: FakeKwebbl
    kazoo: FakeKazoo
    uis: FakeUis
    live: FakeKavkomLive
    hubspot: FakeHubSpot
    kwebbl_ext: str
    c2c: str


@dataclass
class Deployed:
    base: str  # the web process, and PUBLIC_BASE_URL
    env: dict[str, str]  # what every process of the deployment gets
    log: Path  # web, worker and listener write here
    fakes: Fakes

    def callhook(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `callhook` command run by an administrator on the deployment (a one-off dyno)."""
        command = shutil.which("callhook", path=self.env["PATH"])
        assert command is not None, "no callhook executable on the deployment's PATH"
        return subprocess.run(
            [command, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60
        )


class ProcfileDeployment(Deployment):
    """bench's Deployment (release, then `web` and `worker`), plus the `listener` line."""

    def start_listener(self) -> None:
        with self.log.open("ab") as out:
            self.procs.append(
                subprocess.Popen(
                    self._commands()["listener"],
                    shell=True,
                    cwd=ROOT,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )


def empty_database(db_kind: str, tmp: Path) -> str:
    """A database `release` has yet to migrate, as the platform hands it out."""
    if db_kind == "sqlite":
        return f"sqlite:///{tmp / 'callhook.db'}"
    rest = postgres_test_url().split("://", 1)[1]
    engine = sa.create_engine("postgresql+psycopg://" + rest)
    with engine.begin() as conn:
        tables = sa.MetaData()
        tables.reflect(conn)
        tables.drop_all(conn)
    engine.dispose()
    return "postgres://" + rest  # Heroku's spelling: the release must accept it as it is


def settings_variables() -> set[str]:
    """Every environment variable callhook reads, so the test's own are not inherited."""
    from worker.core.settings import Settings

    return {name.upper() for name in Settings.model_fields}


@pytest.fixture(scope="module")
def deployment(
    db_kind: str,
    redis_server: RedisServer,
    hubspot: FakeHubSpot,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp(f"procfile-connections-{db_kind}")
    with contextlib.ExitStack() as stack:
        kavkom = stack.enter_context(
            FakeKavkom(token=KAVKOM_TOKEN, domain_uuid=KAVKOM_DOMAIN, extensions=["901", "902"])
        )
        kavkom.switch_rejects("902", "USER_NOT_REGISTERED")
        kwebbl = stack.enter_context(FakeKwebbl())
        kwebbl_ext = kwebbl.add_extension("201")
        kwebbl.add_extension("202")
        kazoo = stack.enter_context(FakeKazoo(account_id=KAZOO_ACCOUNT, auth_token=KAZOO_TOKEN))
        c2c = kazoo.add_c2c("1001")
        uis = stack.enter_context(FakeUis(access_token=UIS_TOKEN))
        uis.add_employee(25)
        live = stack.enter_context(FakeKavkomLive(refresh_token=KAVKOM_REFRESH))
        hubspot.reset()
        redis.Redis.from_url(redis_server.url).flushall()  # a deployment has its own Redis

        mappings = tmp / "mappings"
        shutil.copytree(ROOT / "mappings", mappings)
        (mappings / "agents.yaml").write_text(AGENTS.format(kwebbl_ext=kwebbl_ext, c2c=c2c))
        env = {
            "DATABASE_URL": empty_database(db_kind, tmp),
            "REDIS_URL": redis_server.url,
            "SECRET_KEY": SECRET_KEY,
            "DEFAULT_REGION": "FR",
            # The agents dial a French, a Dutch (Kwebbl) and a Russian (UIS) customer.
            "DIAL_ALLOWED_COUNTRIES": "FR,NL,RU",
            "MAPPINGS_DIR": str(mappings),
            "INSTANCE_DIR": str(tmp / "instance"),
            "HUBSPOT_ACCESS_TOKEN": TOKEN,
            "HUBSPOT_BASE_URL": hubspot.url,
            **{f"{name.upper()}_WEBHOOK_SECRET": v for name, v in WEBHOOK_SECRETS.items()},
            "KAVKOM_API_TOKEN": KAVKOM_TOKEN,
            "KAVKOM_DOMAIN_UUID": KAVKOM_DOMAIN,
            "KAVKOM_API_BASE_URL": kavkom.url,
            "KWEBBL_API_BASE_URL": kwebbl.url,
            "KWEBBL_AUTH_BASE_URL": kwebbl.auth_url,
            "KWEBBL_CLIENT_ID": kwebbl.client_id,
            "KWEBBL_CLIENT_SECRET": kwebbl.client_secret,
            "KAZOO_API_URL": kazoo.url,
            "KAZOO_ACCOUNT_ID": KAZOO_ACCOUNT,
            "KAZOO_AUTH_TOKEN": KAZOO_TOKEN,
            "UIS_CALL_API_URL": uis.url,
            "UIS_ACCESS_TOKEN": UIS_TOKEN,
            "UIS_VIRTUAL_PHONE_NUMBER": UIS_VIRTUAL_NUMBER,
            "KAVKOM_REFRESH_TOKEN": KAVKOM_REFRESH,
            "KAVKOM_LIVE_URL": live.url,
            "KAVKOM_LISTEN_EXTENSIONS": LISTEN_EXTENSION,
            "PYTHONUNBUFFERED": "1",
            # Each agent page holds a web thread, and a closed one keeps it until the next
            # heartbeat (15 s): this module opens six pages on bench's one web process.
            "WEB_THREADS": "16",
        }
        procfile = ProcfileDeployment(env, tmp)
        base = f"http://127.0.0.1:{procfile.port}"
        procfile.env["PUBLIC_BASE_URL"] = base
        for name in settings_variables() - set(env) - {"PORT", "PUBLIC_BASE_URL"}:
            procfile.env.pop(name, None)  # nothing of this machine's own configuration
        # Kwebbl's OAuth application knows this callhook's callback, and only it.
        kwebbl.registered_redirect_uri = f"{base}/connect/kwebbl/callback"
        stack.callback(procfile.stop)
        try:
            procfile.start()
        except subprocess.CalledProcessError as exc:
            output = exc.stderr.decode(errors="replace")
            raise AssertionError(f"release failed:\n{output}") from None
        procfile.start_listener()
        fakes = Fakes(kavkom, kwebbl, kazoo, uis, live, hubspot, kwebbl_ext, c2c)
        yield Deployed(base, procfile.env, procfile.log, fakes)


@dataclass
class Connected:
    link: str  # what `callhook kwebbl connect-link` printed
    final_url: str  # where the browser ended
    heading: str
    page_text: str


@pytest.fixture(scope="module")
def kwebbl_connected(deployment: Deployed, browser: Any) -> Connected:
    """An administrator connects Kwebbl: the printed link, opened in Chromium, consented."""
    printed = deployment.callhook("kwebbl", "connect-link")
    assert printed.returncode == 0, printed.stderr
    link = printed.stdout.strip()
    page = browser.new_page()
    try:
        page.goto(link, timeout=WAIT_MS)  # → Kwebbl's /authorize → back to the callback
        connected = Connected(
            link, page.url, page.locator("h1").inner_text(), page.locator("body").inner_text()
        )
    finally:
        page.close()
    return connected


# -- 1. Kwebbl, connected in the browser, then subscribed -----------------------------------------
def test_kwebbl_is_connected_in_the_browser_then_subscribed_and_unsubscribed(
    deployment: Deployed, kwebbl_connected: Connected
) -> None:
    fake, base = deployment.fakes.kwebbl, deployment.base
    assert kwebbl_connected.link.startswith(f"{base}/connect/kwebbl?k=")
    consent = [r for r in fake.requests() if r["path"] == "/authorize"]
    assert [r["query"]["redirect_uri"] for r in consent] == [f"{base}/connect/kwebbl/callback"]
    assert kwebbl_connected.final_url.startswith(f"{base}/connect/kwebbl/callback?code=")
    assert kwebbl_connected.heading == "Kwebbl is connected"
    assert "callhook kwebbl subscribe" in kwebbl_connected.page_text
    (exchange,) = fake.token_requests("authorization_code")
    assert exchange["status"] == 200

    secret = WEBHOOK_SECRETS["kwebbl"]
    callback = f"{base}/webhooks/kwebbl?token={secret}"
    made = deployment.callhook("kwebbl", "subscribe")
    assert made.returncode == 0, made.stdout + made.stderr
    (subscription,) = fake.subscriptions.values()
    assert subscription["callback_url"] == callback
    assert f"subscribed: {subscription['id']} → {base}/webhooks/kwebbl?token=***" in made.stdout
    (created,) = [r for r in fake.requests() if r["method"] == "POST" and "subscr" in r["path"]]
    # With the token the browser's sign-in obtained, stored by web, read by this process.
    assert created["headers"]["Authorization"] == f"Bearer {fake.current['access_token']}"

    # Kwebbl delivers to that callback URL: the deployment takes it.
    delivered = requests.post(
        subscription["callback_url"],
        data=load_fixture("kwebbl", "ringing__seed_inbound_anonymous.json"),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert delivered.status_code == 200, delivered.text

    listed = deployment.callhook("kwebbl", "subscriptions")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (line,) = listed.stdout.splitlines()
    assert line.startswith(subscription["id"]) and "this callhook" in line

    gone = deployment.callhook("kwebbl", "unsubscribe", subscription["id"])
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert f"cancelled: {subscription['id']}" in gone.stdout
    assert fake.subscriptions == {}
    assert "no subscriptions" in deployment.callhook("kwebbl", "subscriptions").stdout
    for result in (made, listed, gone):
        assert secret not in result.stdout + result.stderr


# -- 2. The Kavkom listener -----------------------------------------------------------------------
def kavkom_message(fixture: str, call_id: str, number: str) -> dict[str, Any]:
    message = json.loads(load_fixture("kavkom", fixture))
    message["data"].update(callUuid=call_id, number=number)
    return message


def calls_with(hubspot: FakeHubSpot, number: str) -> list[dict[str, Any]]:
    return [
        c
        for c in hubspot.calls()
        if number
        in (c["properties"].get("hs_call_from_number"), c["properties"].get("hs_call_to_number"))
    ]


def unused_mobile() -> str:
    """A French mobile number as Kavkom writes it (digits, no "+"), new to this run."""
    return "3376" + str(uuid.uuid4().int % 10**7).zfill(7)


def test_listener_logs_kavkom_calls_and_comes_back_after_a_drop(deployment: Deployed) -> None:
    live, hubspot = deployment.fakes.live, deployment.fakes.hubspot
    (first,) = wait_until(lambda: live.connections(LISTEN_EXTENSION), timeout=30)
    number, call_id = unused_mobile(), f"ws-{uuid.uuid4()}"
    for fixture in ("ringing", "active", "finished"):
        message = kavkom_message(f"call__{fixture}_inbound.json", call_id, number)
        assert live.send(LISTEN_EXTENSION, message) == 1
    (call,) = wait_until(lambda: calls_with(hubspot, "+" + number), timeout=30)
    assert call["properties"]["hs_call_direction"] == "INBOUND"

    assert live.drop(LISTEN_EXTENSION) == 1
    wait_until(
        lambda: [
            c for c in live.connections(LISTEN_EXTENSION) if c["opened_at"] > first["opened_at"]
        ],
        timeout=30,
    )
    later, later_id = unused_mobile(), f"ws-{uuid.uuid4()}"
    for fixture in ("ringing", "finished"):
        message = kavkom_message(f"call__{fixture}_inbound.json", later_id, later)
        assert live.send(LISTEN_EXTENSION, message) == 1
    wait_until(lambda: calls_with(hubspot, "+" + later), timeout=30)

    # The first call's three messages made one record, and nothing added one since.
    assert len(calls_with(hubspot, "+" + number)) == 1
    assert len(calls_with(hubspot, "+" + later)) == 1
    logs = deployment.log.read_text(errors="replace")
    assert f"listener.kavkom.dropped ext={LISTEN_EXTENSION}" in logs
    assert KAVKOM_REFRESH not in logs
    assert not any(token in logs for token in live.issued)


# -- 3. Click-to-call from the agent page ---------------------------------------------------------
@dataclass(frozen=True)
class Dial:
    email: str
    typed: str  # what the agent types in the dial box
    shown: str  # the number as the success message gives it
    count: Callable[[Fakes], int]  # calls the platform's fake placed so far
    placed: Callable[[Fakes, int], Any]  # what it placed since
    expected: Callable[[Fakes], Any]


DIALS = {
    "kavkom": Dial(
        "kav@example.com", "06 12 34 56 78", "+33 6 12 34 56 78",
        lambda f: len(f.kavkom.placed()),
        lambda f, n: [(r["json"]["src"], r["json"]["destination"]) for r in f.kavkom.placed()[n:]],
        lambda f: [("901", "33612345678")],
    ),
    "kwebbl extension id": Dial(
        "kweb@example.com", "+33 6 12 34 56 79", "+33 6 12 34 56 79",
        lambda f: len(f.kwebbl.calls), lambda f, n: f.kwebbl.calls[n:],
        lambda f: [{"from": {"extension_id": f.kwebbl_ext}, "to": {"number": "+33612345679"}}],
    ),
    "kwebbl number": Dial(
        "kweb-number@example.com", "0612345680", "+33 6 12 34 56 80",
        lambda f: len(f.kwebbl.calls), lambda f, n: f.kwebbl.calls[n:],
        lambda f: [{"from": {"number": "202"}, "to": {"number": "+33612345680"}}],
    ),
    "kazoo": Dial(
        "kaz@example.com", "+33612345681", "+33 6 12 34 56 81",
        lambda f: len(f.kazoo.calls), lambda f, n: f.kazoo.calls[n:],
        lambda f: [{"c2c_id": f.c2c, "extension": "1001", "route": "+33612345681"}],
    ),
    "uis": Dial(
        "uis@example.com", "+7 926 000-01-23", "+7 926 000-01-23",
        lambda f: len(f.uis.calls),
        lambda f, n: [(c["employee"], c["contact"], c["virtual_phone_number"])
                      for c in f.uis.calls[n:]],
        lambda f: [({"id": 25}, "79260000123", UIS_VIRTUAL_NUMBER)],
    ),
}  # fmt: skip


def open_agent_page(deployment: Deployed, browser: Any, email: str) -> Any:
    """The agent's link, printed by `callhook agents link`, opened in Chromium."""
    from playwright.sync_api import expect

    printed = deployment.callhook("agents", "link", email)
    assert printed.returncode == 0, printed.stdout + printed.stderr
    link = printed.stdout.strip()
    assert link.startswith(f"{deployment.base}/agent?k=")
    page = browser.new_page()
    page.goto(link, timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_text("connected", timeout=WAIT_MS)
    return page


def dial(page: Any, number: str) -> Any:
    page.fill("#dial-number", number)
    page.click("#dial-box button")
    return page.locator("#dial-result")


@pytest.mark.parametrize("platform", list(DIALS))
def test_agent_dials_from_the_page_through_each_platform(
    deployment: Deployed, browser: Any, kwebbl_connected: Connected, platform: str
) -> None:
    from playwright.sync_api import expect

    case, fakes = DIALS[platform], deployment.fakes
    before = case.count(fakes)
    page = open_agent_page(deployment, browser, case.email)
    try:
        result = dial(page, case.typed)
        expect(result).to_have_text(
            f"Your phone rings first; pick up to be connected to {case.shown}.", timeout=WAIT_MS
        )
        expect(result).not_to_have_class("error")
    finally:
        page.close()
    assert case.placed(fakes, before) == case.expected(fakes)
    if platform.startswith("kwebbl"):
        # Through the token the browser's sign-in obtained (no KWEBBL_ACCESS_TOKEN is set).
        placed = [r for r in fakes.kwebbl.requests() if r["path"] == "/v100/calls"][-1]
        assert (
            placed["headers"]["Authorization"] == f"Bearer {fakes.kwebbl.current['access_token']}"
        )


def test_a_refused_dial_shows_the_platforms_reason(deployment: Deployed, browser: Any) -> None:
    from playwright.sync_api import expect

    before = len(deployment.fakes.kavkom.requests())
    page = open_agent_page(deployment, browser, "kav-off@example.com")
    try:
        result = dial(page, "06 12 34 56 82")
        expect(result).to_have_class("error", timeout=WAIT_MS)
        expect(result).to_have_text(
            "Kavkom did not connect the call: your phone or softphone is not connected to "
            "Kavkom (USER_NOT_REGISTERED)."
        )
    finally:
        page.close()
    (asked,) = deployment.fakes.kavkom.requests()[before:]
    assert asked["status"] == 422 and asked["json"]["src"] == "902"
    assert re.fullmatch(r"\d+", asked["json"]["destination"])
