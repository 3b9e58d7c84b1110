"""A call's timeline, read from the tables the pipeline already keeps.

Deliveries and the canonical events they became (``webhook_events``, ``call_events``),
HubSpot attempts with their requests (``crm_sync_attempts``), dry-run requests, pops and
the click-to-call that started the call: every one bounded (a runaway call must not take
the page down, and the story says what hit its bound) and redacted before it is shown.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from worker.core.models import (
    Call,
    CallEventRecord,
    CallPop,
    CrmSyncAttempt,
    DialAttempt,
    DryRunRequest,
    WebhookEvent,
)
from worker.core.redaction import Redactor
from worker.reports.call_story.entries import Attempt, Delivery, Dial, DryRun, Pop

# A story's bounds: a call has a handful of each; a runaway one must not take the page down.
MAX_DELIVERIES = 300
MAX_ATTEMPTS = 200
MAX_DRY_RUN = 200
MAX_POPS = 100
MAX_DIALS = 20
# A body is kept whole in the database (up to MAX_BODY_BYTES); on the page, its start.
MAX_BODY_CHARS = 20_000


def _deliveries(
    session: Session, ids: list[int], legs: dict[int, str], redactor: Redactor, capped: list[str]
) -> list[Delivery]:
    records = list(
        session.exec(
            select(CallEventRecord)
            .where(col(CallEventRecord.call_id).in_(ids))
            .order_by(col(CallEventRecord.id))
            .limit(MAX_DELIVERIES * 4)
        )
    )
    by_event: dict[int, list[CallEventRecord]] = {}
    for record in records:
        by_event.setdefault(record.webhook_event_id, []).append(record)
    if len(by_event) > MAX_DELIVERIES:
        capped.append(f"deliveries (the first {MAX_DELIVERIES})")
    wanted = sorted(by_event)[:MAX_DELIVERIES]
    events = session.exec(select(WebhookEvent).where(col(WebhookEvent.id).in_(wanted))).all()
    return [_delivery(e, by_event[e.id or 0], legs, redactor) for e in events]


def _delivery(
    event: WebhookEvent, records: list[CallEventRecord], legs: dict[int, str], redactor: Redactor
) -> Delivery:
    body = redactor.body(event.body, event.content_type)
    truncated = len(body) > MAX_BODY_CHARS
    canonical = [
        (
            str(r.event.get("stage", "")),
            json.dumps(redactor.data(r.event), indent=2, ensure_ascii=False, sort_keys=True),
        )
        for r in sorted(records, key=lambda r: r.position)
    ]
    leg = next((legs[r.call_id] for r in records if r.call_id in legs), None)
    return Delivery(
        at=event.received_at,
        id=event.id or 0,
        platform=event.platform,
        method=event.method,
        content_type=event.content_type,
        status=event.status,
        error=redactor.text(event.error),
        query=redactor.form(event.query) if event.query else "",
        body=body[:MAX_BODY_CHARS],
        truncated=truncated,
        events=canonical,
        leg=leg,
        processed_at=event.processed_at,
    )


def _requests_of(attempt: CrmSyncAttempt, redactor: Redactor) -> list[dict[str, Any]]:
    """The attempt's HubSpot requests (a column being added; absent or None on old rows)."""
    raw = getattr(attempt, "requests", None)
    if not isinstance(raw, list):
        return []
    return [redactor.data(r) for r in raw if isinstance(r, dict)]


def _attempts(
    session: Session, ids: list[int], legs: dict[int, str], redactor: Redactor, capped: list[str]
) -> list[Attempt]:
    rows = list(
        session.exec(
            select(CrmSyncAttempt)
            .where(col(CrmSyncAttempt.call_id).in_(ids))
            .order_by(col(CrmSyncAttempt.id).desc())
            .limit(MAX_ATTEMPTS + 1)
        )
    )
    if len(rows) > MAX_ATTEMPTS:
        capped.append(f"HubSpot attempts (the last {MAX_ATTEMPTS})")
    return [
        Attempt(
            at=a.at,
            action=a.action,
            ok=a.ok,
            http_status=a.http_status,
            error=redactor.text(a.error),
            crm_id=a.crm_id,
            duration_ms=getattr(a, "duration_ms", None),
            requests=_requests_of(a, redactor),
            leg=legs.get(a.call_id),
        )
        for a in rows[:MAX_ATTEMPTS]
    ]


def _dry_runs(session: Session, ids: list[int], redactor: Redactor) -> list[DryRun]:
    rows = session.exec(
        select(DryRunRequest)
        .where(col(DryRunRequest.call_id).in_(ids))
        .order_by(col(DryRunRequest.id).desc())
        .limit(MAX_DRY_RUN)
    ).all()
    return [
        DryRun(
            r.at,
            r.method,
            r.path,
            json.dumps(redactor.data(r.body), indent=2, ensure_ascii=False),
        )
        for r in rows
    ]


def _pops(session: Session, ids: list[int]) -> list[Pop]:
    rows = session.exec(
        select(CallPop)
        .where(col(CallPop.call_id).in_(ids))
        .order_by(col(CallPop.id))
        .limit(MAX_POPS)
    ).all()
    return [Pop(p.shown_at, p.agent_email, p.contact_name) for p in rows]


def _dials(session: Session, call: Call, redactor: Redactor) -> list[Dial]:
    rows = session.exec(
        select(DialAttempt)
        .where(
            DialAttempt.platform_call_id == call.platform_call_id,
            sa.or_(col(DialAttempt.platform) == call.platform, col(DialAttempt.platform).is_(None)),
        )
        .order_by(col(DialAttempt.id))
        .limit(MAX_DIALS)
    ).all()
    return [
        Dial(d.at, d.agent_email, d.requested, d.destination, d.result, redactor.text(d.reason))
        for d in rows
    ]


def timeline(
    session: Session,
    call: Call,
    ids: list[int],
    legs: dict[int, str],
    redactor: Redactor,
    capped: list[str],
) -> list[Any]:
    """Every entry of the call and its merged legs (`ids`), in time order; what hit its
    bound is added to `capped`."""
    entries: list[Any] = [
        *_deliveries(session, ids, legs, redactor, capped),
        *_attempts(session, ids, legs, redactor, capped),
        *_dry_runs(session, ids, redactor),
        *_pops(session, ids),
        *_dials(session, call, redactor),
    ]
    entries.sort(key=lambda e: e.at)
    return entries
