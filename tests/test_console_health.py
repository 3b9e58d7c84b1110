"""The console's health page: each platform's last delivery, silent platforms, the pipeline,
HubSpot's budget, and an answer within seconds whatever is down."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from tests.conftest import (
    KAVKOM_SECRET,
    PLATFORMS,
    Environment,
    free_port,
    load_fixture,
    wait_until,
)
from tests.console_sign_in import signed_in_client
from tests.test_console_problems import Cells
from worker.core.db import session_scope
from worker.core.metrics import HUBSPOT_REQUESTS
from worker.core.models import Call, CrmSyncAttempt, EventStatus, WebhookEvent, utcnow
from worker.reports.health_facts import business_time_between, is_silent

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}
UTC_ZONE = ZoneInfo("UTC")
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


@pytest.fixture
def app(stack: dict[str, Any], hubspot: Any) -> Any:
    from webhook_receiver.web import create_app

    hubspot.reset()
    return create_app({"TESTING": True})


def platform_rows(page: str) -> dict[str, list[str]]:
    """The platforms table, by platform name."""
    table = page.split('id="platforms"', 1)[1].split("</table>", 1)[0]
    return {row[0]: row for row in Cells(table).rows}


def add_event(platform: str, received_at: datetime, status: str = EventStatus.PROCESSED) -> None:
    with session_scope() as session:
        session.add(
            WebhookEvent(
                platform=platform,
                dedupe_key=f"health-{time.time_ns()}",
                method="POST",
                body="{}",
                status=status,
                received_at=received_at,
            )
        )


def worker_answers() -> bool:
    from worker.tasks.celery_app import configure

    return bool(configure().control.ping(timeout=1.0))


# -- the silence rule, on fixed clocks -----------------------------------------------------


def at(day: datetime, hh: int, mm: int = 0) -> datetime:
    return day.replace(hour=hh, minute=mm)


def test_business_hours_are_counted_on_weekdays_only() -> None:
    assert business_time_between(at(MONDAY, 10), at(MONDAY, 11, 30), UTC_ZONE) == timedelta(
        minutes=90
    )
    saturday = MONDAY + timedelta(days=5)
    assert business_time_between(at(saturday, 9), at(saturday, 18), UTC_ZONE) == timedelta(0)
    friday = MONDAY + timedelta(days=4)
    # Friday 18:50 → Monday 08:30 (next week): 10 min + 30 min of business hours.
    monday_next = MONDAY + timedelta(days=7)
    assert business_time_between(at(friday, 18, 50), at(monday_next, 8, 30), UTC_ZONE) == (
        timedelta(minutes=40)
    )
    # Night hours count for nothing.
    assert business_time_between(at(MONDAY, 19), at(MONDAY + timedelta(days=1), 8), UTC_ZONE) == (
        timedelta(0)
    )


def test_silent_means_an_hour_of_business_time_without_a_delivery() -> None:
    assert is_silent(at(MONDAY, 10), at(MONDAY, 11, 30), UTC_ZONE)[0] is True
    assert is_silent(at(MONDAY, 10), at(MONDAY, 10, 45), UTC_ZONE)[0] is False
    friday = MONDAY + timedelta(days=4)
    monday_next = MONDAY + timedelta(days=7)
    # The weekend's quiet is not silence: Monday 08:30 after a Friday 18:50 delivery.
    assert is_silent(at(friday, 18, 50), at(monday_next, 8, 30), UTC_ZONE)[0] is False
    # Older than a week: a retired platform is not flagged; never used neither.
    assert is_silent(at(MONDAY, 10), at(MONDAY, 10) + timedelta(days=8), UTC_ZONE)[0] is False
    assert is_silent(None, at(MONDAY, 10), UTC_ZONE) == (False, None)


# -- the page --------------------------------------------------------------------------------


def test_health_shows_each_platform_and_flags_the_silent_one(app) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload["callUuid"] = "health-1"
    assert app.test_client().post("/webhooks/kavkom", json=payload, headers=AUTH).status_code == 200
    # UIS last sent almost a week ago: whatever today is, the week in between held more
    # than an hour of business time. Voximplant last sent a month ago: retired, not flagged.
    add_event("uis", utcnow() - timedelta(days=6, hours=23), status=EventStatus.UNMAPPED)
    add_event("voximplant", utcnow() - timedelta(days=30))

    console = signed_in_client(app)
    started = time.monotonic()
    page = console.get("/admin/health").get_data(as_text=True)
    assert time.monotonic() - started < 3
    rows = platform_rows(page)
    assert set(rows) == set(PLATFORMS)
    kavkom = rows["kavkom"]
    assert kavkom[1].startswith(utcnow().strftime("%Y-%m-%d")) and "ago" in kavkom[1]
    assert kavkom[2] in ("pending", "processed") and kavkom[4] == "ok"
    assert rows["uis"][2] == "unmapped" and rows["uis"][4] == "silent"
    assert rows["voximplant"][4] == "ok"
    assert rows["kazoo"][1] == "never" and rows["kazoo"][4] == "no deliveries yet"
    assert all(
        rows[p][4] == "no deliveries yet" for p in set(PLATFORMS) - {"kavkom", "uis", "voximplant"}
    )
    assert "minutes of business hours" in page  # the rule is written on the page


def test_health_shows_the_pipeline_and_hubspot_budget(app) -> None:  # type: ignore[no-untyped-def]
    from worker.core.redis_conn import connect

    client = connect()
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    client.zadd("callhook:ratelimit:requests", {f"health-{i}": now_ms for i in range(3)})
    client.pexpire("callhook:ratelimit:requests", 10_500)
    client.hincrbyfloat(HUBSPOT_REQUESTS.key, json.dumps(["429"], separators=(",", ":")), 2)
    answered_429 = int(float(client.hget(HUBSPOT_REQUESTS.key, '["429"]') or 0))
    with session_scope() as session:
        call = Call(platform="kavkom", platform_call_id="health-429", ended=True)
        session.add(call)
        session.flush()
        assert call.id is not None
        session.add(
            CrmSyncAttempt(
                call_id=call.id,
                action="create",
                ok=False,
                http_status=429,
                at=utcnow() - timedelta(minutes=10),
            )
        )
        session.add(
            CrmSyncAttempt(
                call_id=call.id,
                action="create",
                ok=False,
                http_status=429,
                at=utcnow() - timedelta(hours=2),
            )
        )
    with session_scope() as session:  # stored, never queued: the broker was down
        session.add(
            WebhookEvent(
                platform="kavkom",
                dedupe_key="health-outbox",
                method="POST",
                body="{}",
                received_at=utcnow() + timedelta(hours=1),
            )
        )

    wait_until(worker_answers, timeout=30)  # the module's worker has finished starting
    page = signed_in_client(app).get("/admin/health").get_data(as_text=True)
    assert "Live: calls are sent to HubSpot." in page and "DRY RUN" not in page
    assert '<span class="badge ok">answering</span> 1 worker' in page
    assert "<code>celery@" in page
    for queue in ("callhook", "pops", "crm"):
        assert f"<dt><code>{queue}</code></dt><dd>" in page
    used = int(page.split("<dt>All requests</dt>", 1)[1].split("<dd>", 1)[1].split(" of ", 1)[0])
    assert 3 <= used <= 100
    assert "of 100 per 10.5 s" in page
    assert '<span class="big">1</span> sync attempt ended on a 429' in page
    assert f"{answered_429} answered 429" in page
    outbox = page.split('id="h-outbox"', 1)[1].split("</section>", 1)[0]
    assert '<span class="big">1</span> stored delivery not yet queued' in outbox
    with session_scope() as session:  # the sweep must not pick this one up mid-suite
        for row in session.exec(
            select(WebhookEvent).where(WebhookEvent.dedupe_key == "health-outbox")
        ):
            session.delete(row)


def test_health_answers_within_seconds_with_redis_down(stack) -> None:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    closed = f"redis://127.0.0.1:{free_port()}/0"
    env = Environment()
    env.set({"REDIS_URL": closed, "HUBSPOT_ACCESS_TOKEN": None, "HUBSPOT_BASE_URL": None})
    try:
        app = create_app({"TESTING": True})
        console = signed_in_client(app)
        started = time.monotonic()
        answer = console.get("/admin/health")
        elapsed = time.monotonic() - started
        page = answer.get_data(as_text=True)
    finally:
        env.restore()
    assert answer.status_code == 200 and elapsed < 2.5, elapsed
    for card in ("h-worker", "h-queues", "h-budget", "h-answers"):
        section = page.split(f'id="{card}"', 1)[1].split("</section>", 1)[0]
        assert "unknown: ConnectionError" in section, section
    assert "DRY RUN: nothing is sent to HubSpot" in page  # loud, with no token set
    assert set(platform_rows(page)) >= {"kavkom", "uis"}  # the database still answers


def test_health_needs_a_signed_in_operator(app) -> None:  # type: ignore[no-untyped-def]
    assert app.test_client().get("/admin/health").status_code == 401
    assert "Health" in signed_in_client(app).get("/admin/health").get_data(as_text=True)


def test_nothing_is_unknown_once_redis_is_back(app) -> None:  # type: ignore[no-untyped-def]
    """The previous test's closed Redis URL is not left behind in this process."""
    page = signed_in_client(app).get("/admin/health").get_data(as_text=True)
    assert "unknown:" not in page


def test_a_slow_or_failing_source_is_unknown_and_does_not_hold_the_page() -> None:
    from worker.reports.health_facts import gather

    started = time.monotonic()
    facts = gather(
        {"slow database": lambda: time.sleep(5), "fine": lambda: 3, "broken": lambda: 1 / 0},
        deadline_s=0.5,
    )
    assert time.monotonic() - started < 1.0
    assert facts["slow database"].unknown == "no answer within 0.5 s"
    assert facts["fine"].value == 3
    assert facts["broken"].unknown == "ZeroDivisionError: division by zero"
