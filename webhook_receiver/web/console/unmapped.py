"""Deliveries the mapping could not read (or that failed), grouped for the Problems page.

Grouped by platform and reason (the rule that refused them), because one fix to a
mapping file answers a whole group: the operator sees each group's count, first and last
seen, and its latest deliveries with a redacted preview, then replays them (`replay.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from webhook_receiver.web.console.redacted import READ_CHARS, preview
from worker.core.models import EventStatus, WebhookEvent

PROBLEM_STATUSES = (EventStatus.UNMAPPED, EventStatus.FAILED)
MAX_GROUPS = 50
DELIVERIES_PER_GROUP = 20


@dataclass
class Delivery:
    id: int
    received_at: datetime
    status: str
    method: str
    content_type: str
    preview: str


@dataclass
class Group:
    platform: str
    reason: str | None
    count: int
    failed: int
    first_seen: datetime
    last_seen: datetime
    deliveries: list[Delivery] = field(default_factory=list)


def reason_filter(reason: str | None) -> Any:
    """The deliveries of one group: its reason, or none recorded."""
    return (
        col(WebhookEvent.error).is_(None) if reason is None else col(WebhookEvent.error) == reason
    )


def groups(session: Session, secrets: list[str]) -> list[Group]:
    """The latest groups of problem deliveries, each with its latest deliveries."""
    failed = sa.func.sum(sa.case((col(WebhookEvent.status) == EventStatus.FAILED, 1), else_=0))
    last = sa.func.max(WebhookEvent.received_at)
    rows = session.exec(
        select(  # type: ignore[call-overload]  # sqlmodel types select() for up to 4 columns
            WebhookEvent.platform,
            WebhookEvent.error,
            sa.func.count(),
            failed,
            sa.func.min(WebhookEvent.received_at),
            last,
        )
        .where(col(WebhookEvent.status).in_(PROBLEM_STATUSES))
        .group_by(WebhookEvent.platform, WebhookEvent.error)
        .order_by(last.desc())
        .limit(MAX_GROUPS)
    ).all()
    groups = []
    for platform, reason, count, n_failed, first, latest in rows:
        group = Group(
            platform, reason, int(count), int(n_failed or 0), _aware(first), _aware(latest)
        )
        group.deliveries = _deliveries(session, platform, reason, secrets)
        groups.append(group)
    return groups


def _deliveries(
    session: Session, platform: str, reason: str | None, secrets: list[str]
) -> list[Delivery]:
    """The group's latest deliveries, each body read only as far as its preview needs
    (bodies run to MAX_BODY_BYTES, and a page lists up to a thousand of them)."""
    rows = session.exec(
        select(  # type: ignore[call-overload]  # sqlmodel types select() for up to 4 columns
            WebhookEvent.id,
            WebhookEvent.received_at,
            WebhookEvent.status,
            WebhookEvent.method,
            WebhookEvent.content_type,
            sa.func.substr(WebhookEvent.body, 1, READ_CHARS),
            sa.func.substr(WebhookEvent.query, 1, READ_CHARS),
        )
        .where(
            WebhookEvent.platform == platform,
            reason_filter(reason),
            col(WebhookEvent.status).in_(PROBLEM_STATUSES),
        )
        .order_by(col(WebhookEvent.id).desc())
        .limit(DELIVERIES_PER_GROUP)
    ).all()
    return [
        Delivery(
            event_id, _aware(received), status, method, content_type,
            preview(query if method == "GET" else body, secrets),
        )
        for event_id, received, status, method, content_type, body, query in rows
    ]  # fmt: skip


def _aware(value: Any) -> datetime:
    """Aggregates and bare columns skip the column's type on SQLite: times come back naive
    (or as text); they are UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
