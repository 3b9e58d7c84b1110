"""The agent page when callhook runs without a HubSpot token (the dry run of a trial).

Nothing reaches HubSpot, so a created contact has no record to open and a wrap-up is
recorded, not sent: the page says so instead of "HubSpot did not answer".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlmodel import Session, select

from tests.browser import needs_chromium
from tests.conftest import (
    Environment,
    RedisServer,
    WorkerProcess,
    base_env,
    fresh_database,
    wait_until,
)
from tests.test_agent_page_browser import agent_page, post
from tests.test_screen_pop import _pages_per_agent, live  # noqa: F401  (a fixture)
from worker.core.db import get_engine
from worker.core.models import DryRunRequest

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def stack(  # type: ignore[no-untyped-def]
    db_kind: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Database, Redis and a worker, with no HubSpot token: the dry run."""
    tmp = tmp_path_factory.mktemp(f"dry-page-{db_kind}")
    env = base_env(fresh_database(db_kind, tmp), redis_server.url, tmp / "instance", None)
    environment = Environment()
    environment.set({**env, "HUBSPOT_ACCESS_TOKEN": None, "HUBSPOT_BASE_URL": None})
    redis.Redis.from_url(redis_server.url).flushall()
    worker = WorkerProcess(env, tmp / "worker.log")
    worker.start()
    yield {"env": env, "worker": worker}
    worker.stop()
    environment.restore()


def recorded(method: str, path_start: str) -> list[DryRunRequest]:
    with Session(get_engine()) as session:
        rows = session.exec(
            select(DryRunRequest).where(DryRunRequest.method == method).order_by(DryRunRequest.id)
        ).all()
        return [r for r in rows if r.path.startswith(path_start)]


def _note_in(request: DryRunRequest, text: str) -> bool:
    body = request.body if isinstance(request.body, dict) else {}
    return text in str(body.get("properties", {}).get("hs_call_body", ""))


def test_create_contact_and_wrap_up_in_a_dry_run_say_nothing_went_to_hubspot(  # type: ignore[no-untyped-def]
    browser,
    live_server,
) -> None:
    from playwright.sync_api import expect

    page = agent_page(browser, live_server, "alice@example.com")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    now = int(time.time())
    post(live_server, {**live("dry-page", "ringing", "1001", "33612345690"), "createdEpoch": now})
    card = page.locator('[data-call="kavkom:dry-page"]')
    expect(card.locator(".who")).to_have_text("+33 6 12 34 56 90")
    card.get_by_role("button", name="Create contact").click()
    expect(card.locator('[data-role="contact-result"]')).to_have_text(
        "Contact created (dry run: not sent to HubSpot)"
    )
    expect(card.get_by_role("button", name="Create contact")).to_have_count(0)
    assert dialogs == []  # no "HubSpot did not answer" alert

    for state in ("active", "finished"):
        post(live_server, {**live("dry-page", state, "1001", "33612345690"), "createdEpoch": now})
    expect(card).to_have_attribute("data-state", "ended")
    wait_until(lambda: recorded("POST", "/crm/v3/objects/calls"), timeout=30)
    card.get_by_label("Outcome").select_option(label="Connected")
    card.get_by_label("Note").fill("Trial call")
    card.get_by_role("button", name="Save").click()
    expect(card.locator('[data-role="wrap-saved"]')).to_contain_text(
        "Saved (dry run: not sent to HubSpot)."
    )
    # What HubSpot would have received: the same record, updated with the note.
    (created,) = recorded("POST", "/crm/v3/objects/calls")
    # The call may have been updated once already (its last event after the create); wait
    # for the update that carries the wrap-up: it is the last one (nothing after it drops
    # the note), and every update hit the record that was created.
    wait_until(
        lambda: any(_note_in(r, "Trial call") for r in recorded("PATCH", "/crm/v3/objects/calls/")),
        timeout=30,
    )
    patched = recorded("PATCH", "/crm/v3/objects/calls/")
    assert {r.call_id for r in patched} == {created.call_id}
    assert _note_in(patched[-1], "Trial call")
    assert dialogs == []
    page.context.close()
