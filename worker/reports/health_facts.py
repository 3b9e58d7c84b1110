"""What the console's health page shows, computed here without Flask so it can be tested alone.

Every fact is gathered in its own daemon thread and the whole set is waited for at most
`DEADLINE_S`: Redis down, a database holding a lock, or a broker that never answers a
ping each turn into "unknown: <reason>" for their own line, never a slow or failed page.
Redis is read with sub-second socket timeouts; the threads left behind by a hung source
end with their own timeouts and hold nothing.

Sources:
- last delivery per platform: ``webhook_events`` (its newest row by id, the receiver's
  insertion order), and the silence rule below;
- outbox: ``webhook_events`` pending and never enqueued (the broker was down when they
  arrived; ``tasks.sweep_outbox`` queues them);
- queue depths: ``LLEN`` of each Celery queue (``metrics.QUEUES``), as ``/metrics`` does;
- worker heartbeat: a Celery broadcast ``ping`` (one second): a worker's main process
  answers it even while its pool is busy, so "no answer" means no worker consumes the
  broker, which is what stops every sync. Beat leaves no trace in Redis to read;
- HubSpot budget: the sliding windows `crm.rate_limit` fills (sorted sets of request times,
  scored in Redis's clock), counted over their window now;
- HubSpot answers: ``callhook_hubspot_requests`` counts since counting began (the Redis
  counters keep no history, so no hourly figure can come from them), and from the database
  the sync attempts that ended on a 429 in the last hour (``crm_sync_attempts``).

The silence rule: a platform is flagged silent when more than `SILENT_AFTER` of business
hours (Monday to Friday, `BUSINESS_START`-`BUSINESS_END`, in `BUSINESS_TIMEZONE`) have
passed since its last delivery, while that delivery is less than `ACTIVE_WITHIN` old: a
platform never used, or retired a week ago, is not flagged. Hours are counted, not merely
compared, so a Monday morning does not flag the weekend's quiet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

import redis
import sqlalchemy as sa
from sqlmodel import Session, col, select

from worker.core.db import get_engine
from worker.core.metrics import _PRIORITY_SUFFIXES, HUBSPOT_REQUESTS, QUEUES
from worker.core.models import CrmSyncAttempt, EventStatus, WebhookEvent, utcnow
from worker.core.settings import get_settings
from worker.crm.rate_limit import hubspot_budgets, window_key

T = TypeVar("T")

DEADLINE_S = 1.6  # the whole page answers within about 2 s, whatever is down
REDIS_TIMEOUT_S = 0.5
PING_TIMEOUT_S = 1.0
SILENT_AFTER = timedelta(minutes=60)
ACTIVE_WITHIN = timedelta(days=7)
BUSINESS_START = clock(8, 0)
BUSINESS_END = clock(19, 0)
# worker/core/settings.py has no business time zone (DEFAULT_REGION is a phone region): UTC.
BUSINESS_TIMEZONE = "UTC"
REASON_CHARS = 200


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A value, or why it is unknown (shown as "unknown: <reason>")."""

    value: T | None = None
    unknown: str | None = None


@dataclass(frozen=True)
class PlatformActivity:
    platform: str
    last_at: datetime | None
    last_status: str | None
    silent: bool
    # Business hours since the last delivery (what the silence rule counts).
    quiet_business: timedelta | None


@dataclass(frozen=True)
class Outbox:
    not_enqueued: int
    oldest: datetime | None


@dataclass(frozen=True)
class BudgetUse:
    name: str
    used: int
    limit: int
    window_s: float


@dataclass(frozen=True)
class HubSpotAnswers:
    total: int
    refused_429: int
    by_status: dict[str, int]


@dataclass
class HealthFacts:
    now: datetime
    dry_run: bool
    timezone: str
    platforms: Fact[list[PlatformActivity]]
    outbox: Fact[Outbox]
    queues: Fact[dict[str, int]]
    workers: Fact[list[str]]
    budget: Fact[list[BudgetUse]]
    answers: Fact[HubSpotAnswers]
    syncs_429_last_hour: Fact[int]
    rules: dict[str, Any] = field(default_factory=dict)


# -- the silence rule ------------------------------------------------------------------------


def business_time_between(
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    opens: clock = BUSINESS_START,
    closes: clock = BUSINESS_END,
) -> timedelta:
    """Business hours (Mon-Fri, `opens`-`closes` in `tz`) between two aware times."""
    if end <= start:
        return timedelta(0)
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    total = timedelta(0)
    day: date = local_start.date()
    while day <= local_end.date():
        if day.weekday() < 5:
            day_open = datetime.combine(day, opens, tz)
            day_close = datetime.combine(day, closes, tz)
            overlap = min(day_close, local_end) - max(day_open, local_start)
            total += max(overlap, timedelta(0))
        day += timedelta(days=1)
    return total


def is_silent(
    last_at: datetime | None, now: datetime, tz: ZoneInfo
) -> tuple[bool, timedelta | None]:
    """(flagged, business hours since `last_at`) under the module's silence rule."""
    if last_at is None:
        return False, None
    quiet = business_time_between(last_at, now, tz)
    return (now - last_at <= ACTIVE_WITHIN and quiet > SILENT_AFTER), quiet


# -- the sources -----------------------------------------------------------------------------


def _last_deliveries(
    platforms: Iterable[str], now: datetime, tz: ZoneInfo
) -> list[PlatformActivity]:
    out = []
    with Session(get_engine()) as session:
        for platform in platforms:
            row = session.exec(
                select(WebhookEvent.received_at, WebhookEvent.status)
                .where(WebhookEvent.platform == platform)
                .order_by(col(WebhookEvent.id).desc())
                .limit(1)
            ).first()
            last_at, status = (row[0], row[1]) if row else (None, None)
            silent, quiet = is_silent(last_at, now, tz)
            out.append(PlatformActivity(platform, last_at, status, silent, quiet))
    return out


def _outbox() -> Outbox:
    with Session(get_engine()) as session:
        count, oldest = session.exec(
            select(sa.func.count(), sa.func.min(WebhookEvent.received_at)).where(
                WebhookEvent.status == EventStatus.PENDING,
                col(WebhookEvent.enqueued_at).is_(None),
            )
        ).one()
    return Outbox(int(count or 0), oldest)


def _syncs_429_since(since: datetime) -> int:
    with Session(get_engine()) as session:
        count = session.exec(
            select(sa.func.count()).where(
                col(CrmSyncAttempt.at) >= since,
                CrmSyncAttempt.http_status == 429,
            )
        ).one()
    return int(count or 0)


def _redis() -> redis.Redis:
    from worker.core.redis_conn import redis_url

    return redis.Redis.from_url(
        redis_url(), socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )


def _queues() -> dict[str, int]:
    pipe = _redis().pipeline(transaction=False)
    for queue in QUEUES:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
    lengths = pipe.execute()
    step = len(_PRIORITY_SUFFIXES)
    return {q: sum(lengths[i * step : (i + 1) * step]) for i, q in enumerate(QUEUES)}


def _budget() -> list[BudgetUse]:
    client = _redis()
    seconds, micros = client.time()  # the limiter scores in Redis's clock, so must we
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    budgets = hubspot_budgets(get_settings())  # the limiter's own windows (crm.factory)
    pipe = client.pipeline(transaction=False)
    for name, budget in budgets.items():
        pipe.zcount(window_key(name), f"({now_ms - int(budget.window_s * 1000)}", "+inf")
    used = pipe.execute()
    return [
        BudgetUse(name, int(n), budget.limit, budget.window_s)
        for (name, budget), n in zip(budgets.items(), used, strict=True)
    ]


def _answers() -> HubSpotAnswers:
    import json

    raw = _redis().hgetall(HUBSPOT_REQUESTS.key)
    by_status = {json.loads(k)[0]: int(float(v)) for k, v in raw.items()}
    return HubSpotAnswers(
        sum(by_status.values()), by_status.get("429", 0), dict(sorted(by_status.items()))
    )


def _workers() -> list[str]:
    """Names of the Celery workers that answer a ping; Redis is asked first, briefly."""
    _redis().ping()
    from worker.tasks.celery_app import configure

    replies = configure().control.ping(timeout=PING_TIMEOUT_S) or []
    return sorted(name for reply in replies for name in reply)


# -- gathering -------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: the type and the message's first line."""
    from worker.core.error_reporting import FILTERED
    from worker.core.redaction import Redactor, secret_values

    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    text = Redactor(secret_values(get_settings()), FILTERED).text(text)
    return text.rstrip(": ")[:REASON_CHARS]


def gather(
    sources: dict[str, Callable[[], Any]], deadline_s: float = DEADLINE_S
) -> dict[str, Fact[Any]]:
    """Run each source in its own daemon thread; whatever has not answered by the deadline
    is unknown. Threads, not a pool: a pool's threads are joined at exit, a hung one too."""
    results: dict[str, Fact[Any]] = {}

    def run(name: str, source: Callable[[], Any]) -> None:
        try:
            results[name] = Fact(value=source())
        except Exception as exc:  # any failure of a source is that line's "unknown"
            results[name] = Fact(unknown=_reason(exc))

    threads = [
        threading.Thread(target=run, args=(name, source), daemon=True, name=f"health-{name}")
        for name, source in sources.items()
    ]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline_s
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    late = Fact[Any](unknown=f"no answer within {deadline_s:.1f} s")
    return {name: results.get(name, late) for name in sources}


def health_facts(platforms: Iterable[str], now: datetime | None = None) -> HealthFacts:
    """Everything the health page shows, each fact bounded in time (see the module)."""
    now = now or utcnow()
    tz = ZoneInfo(BUSINESS_TIMEZONE)
    names = sorted(platforms)
    facts = gather(
        {
            "platforms": lambda: _last_deliveries(names, now, tz),
            "outbox": _outbox,
            "queues": _queues,
            "workers": _workers,
            "budget": _budget,
            "answers": _answers,
            "syncs_429": lambda: _syncs_429_since(now - timedelta(hours=1)),
        }
    )
    return HealthFacts(
        now=now.astimezone(UTC),
        dry_run=get_settings().dry_run,
        timezone=BUSINESS_TIMEZONE,
        platforms=facts["platforms"],
        outbox=facts["outbox"],
        queues=facts["queues"],
        workers=facts["workers"],
        budget=facts["budget"],
        answers=facts["answers"],
        syncs_429_last_hour=facts["syncs_429"],
        rules={
            "silent_after_minutes": int(SILENT_AFTER.total_seconds() // 60),
            "active_within_days": ACTIVE_WITHIN.days,
            "opens": BUSINESS_START.strftime("%H:%M"),
            "closes": BUSINESS_END.strftime("%H:%M"),
            "ping_timeout_s": PING_TIMEOUT_S,
        },
    )
