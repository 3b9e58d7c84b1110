"""Accepting an authenticated delivery: map, store durably, enqueue after commit.

The webhook route and the listeners that hold a platform's stream open (Kavkom's
WebSocket) hand payloads to `ingest`, so both paths store, deduplicate and map
the same way. Stored before acknowledged; enqueued only after the commit; a broker
outage leaves the row for the outbox sweep.

What cannot be read is kept too. An authenticated delivery whose body does not
parse (`keep_unreadable`, 400/415) or that the mapping cannot read (422, or 200
under the mapping's ``on_unmapped: accept``) is stored as ``unmapped`` with the
reason, listed by ``callhook events list --status unmapped`` and recovered with
``callhook events replay`` once the file is fixed. Nothing accepted is lost, and
nothing refused is lost either once the sender proved who it is.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError

from webhook_receiver.deliveries.group_commit import GroupCommit
from webhook_receiver.mapping import MappingError, PlatformMapping, map_payload
from webhook_receiver.mapping.engine import payload_digest
from webhook_receiver.mapping.payloads import BadPayload, UnsupportedFormat, check_bounds
from worker.core.db import get_engine
from worker.core.metrics import WEBHOOK_DELIVERIES
from worker.core.models import EventStatus, WebhookEvent
from worker.core.settings import get_settings
from worker.tasks.publish import enqueue_event_soon

log = logging.getLogger("callhook.webhook")

# A reason is answered, logged and stored; past this it is cut (the engine already quotes
# values briefly, this bounds the rest, such as a long list of rule names).
MAX_REASON_CHARS = 1000


@dataclass
class Intake:
    """What happened to a payload: an HTTP status, a stable log key, a JSON body."""

    status: int
    key: str
    body: dict[str, Any] = field(default_factory=dict)


def _store(row: WebhookEvent) -> tuple[int, bool]:
    """Insert the event; (id, True) if new, (existing id, False) on a duplicate delivery.

    Rows of deliveries arriving together are written together (`group_commit`): the
    answer still waits for the commit that holds this row.
    """
    outcome = _GROUP.write(row)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


_EVENTS = WebhookEvent.__table__  # type: ignore[attr-defined]  # SQLModel's table, untyped
_EVENT_COLUMNS = tuple(c.name for c in _EVENTS.columns if c.name != "id")
Stored = tuple[int, bool] | BaseException


def _write_rows(rows: Sequence[WebhookEvent]) -> list[Stored]:
    """One batch's write, each row's outcome. A connection the database dropped since its
    last use (a restart: the pool does not ping) fails once, invalidating the pool; the
    batch is then tried again on a fresh one. A batch the database refuses for another
    reason (one odd row) is written row by row, so only that row fails."""
    try:
        try:
            return list(_insert(rows))
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.info("webhook.store_reconnected rows=%s", len(rows))
            return list(_insert(rows))
    except OperationalError:
        raise  # the database is unavailable: every row's 503
    except DBAPIError:
        if len(rows) == 1:
            raise
    outcomes: list[Stored] = []
    for row in rows:
        try:
            outcomes.extend(_insert([row]))
        except DBAPIError as exc:
            outcomes.append(exc)
    return outcomes


@functools.cache
def _insert_statement(dialect: str) -> sa.Insert:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(_EVENTS)
        .on_conflict_do_nothing(index_elements=["platform", "dedupe_key"])
        .returning(_EVENTS.c.id, _EVENTS.c.platform, _EVENTS.c.dedupe_key)
    )


def _insert(rows: Sequence[WebhookEvent]) -> list[tuple[int, bool]]:
    """One INSERT … ON CONFLICT DO NOTHING RETURNING for all rows, and one COMMIT (Core,
    not the ORM's unit of work: this is the deliveries' one durable write).

    A key already stored, or repeated within the batch, is a duplicate: its id is read
    back in the same transaction. RETURNING promises no order, so rows are matched on
    (platform, dedupe_key), never by position.
    """
    engine = get_engine()
    keys = [(row.platform, row.dedupe_key) for row in rows]
    first: dict[tuple[str, str], int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    values = [{name: getattr(rows[i], name) for name in _EVENT_COLUMNS} for i in first.values()]
    with engine.begin() as conn:
        # One statement compiled once per dialect and cached: the rows go as parameters
        # (SQLAlchemy sends them as one multi-row INSERT, "insertmanyvalues").
        inserted = {
            (p, k): int(i)
            for i, p, k in conn.execute(_insert_statement(engine.dialect.name), values)
        }
        missing = [key for key in first if key not in inserted]
        existing: dict[tuple[str, str], int] = {}
        if missing:
            found = conn.execute(
                sa.select(_EVENTS.c.id, _EVENTS.c.platform, _EVENTS.c.dedupe_key).where(
                    sa.tuple_(_EVENTS.c.platform, _EVENTS.c.dedupe_key).in_(missing)
                )
            )
            existing = {(p, k): int(i) for i, p, k in found}
    outcomes: list[tuple[int, bool]] = []
    for index, key in enumerate(keys):
        if key in inserted:
            outcomes.append((inserted[key], first[key] == index))
        else:
            outcomes.append((existing[key], False))
    return outcomes


_GROUP: GroupCommit[WebhookEvent, Stored] = GroupCommit(_write_rows)


def _store_or_none(row: WebhookEvent) -> tuple[int | None, bool]:
    try:
        return _store(row)
    except OperationalError:
        log.error("webhook.store_failed platform=%s", row.platform)
        return None, False


UNAVAILABLE = Intake(
    503,
    "webhook.store_failed",
    # Not stored, so not accepted: a 503 tells the platform to deliver it again.
    {"error": "store_failed", "reason": "storage unavailable; retry later"},
)


def _text(raw: bytes | str) -> str:
    """Text a column can hold: bytes that are not UTF-8, and NUL (which PostgreSQL's text
    refuses), become U+FFFD. Only a body that could not be parsed anyway has either."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text.replace("\x00", "\ufffd")


def _row(platform: str, raw: bytes, method: str, content_type: str, query: str) -> WebhookEvent:
    return WebhookEvent(
        platform=platform,
        dedupe_key="",
        received_at=datetime.now(UTC),
        method=method,
        content_type=_text(content_type)[:200],
        body=_text(raw),
        query=query,
        # Given, not defaulted: pydantic inspects a builtin default_factory's signature on
        # each call, a measurable cost on the webhook's hot path.
        canonical=[],
        attempts=0,
    )


def raw_digest(raw: bytes, method: str, content_type: str, query: str) -> str:
    """The dedupe key of a delivery that could not be parsed: its bytes, as received."""
    digest = hashlib.sha256()
    for part in (method.encode(), content_type.encode(), query.encode(), raw):
        digest.update(len(part).to_bytes(8, "big") + part)
    return "raw:sha256:" + digest.hexdigest()


def _keep_unmapped(
    row: WebhookEvent, reason: str, *, dedupe_key: str, refuse_with: int | None, key: str
) -> Intake:
    """Store `row` as unmapped with `reason`; refuse with that status, or accept (200)."""
    reason = reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"
    row.dedupe_key = dedupe_key
    row.status = EventStatus.UNMAPPED
    row.error = reason
    event_id, _ = _store_or_none(row)
    if event_id is None:
        return UNAVAILABLE
    status = refuse_with or 200
    log.warning(
        "%s platform=%s id=%s status=%s reason=%s", key, row.platform, event_id, status, reason
    )
    if refuse_with is None:
        return Intake(200, key, {"status": "unmapped", "id": event_id, "reason": reason})
    body = {"error": key.split(".", 1)[1], "reason": reason, "id": event_id}
    return Intake(refuse_with, key, body)


def _keep_unreadable(
    mapping: PlatformMapping,
    problem: BadPayload,
    *,
    raw: bytes,
    method: str,
    content_type: str,
    query: str = "",
) -> Intake:
    """`keep_unreadable`'s work, uncounted (`ingest` counts what it hands on)."""
    key = "webhook.unsupported_media_type" if isinstance(problem, UnsupportedFormat) else (
        "webhook.bad_body"
    )  # fmt: skip
    row = _row(mapping.platform, raw, method, content_type, query)
    return _keep_unmapped(
        row,
        str(problem),
        dedupe_key=raw_digest(raw, method, content_type, query),
        refuse_with=problem.status,
        key=key,
    )


def _ingest(
    mapping: PlatformMapping,
    payload: Any,
    *,
    raw: bytes,
    method: str,
    content_type: str,
    query: str = "",
) -> Intake:
    """`ingest`'s work, uncounted."""
    platform = mapping.platform
    row = _row(platform, raw, method, content_type, query)
    try:
        check_bounds(payload)  # a listener parses its own messages: bound them here too
    except BadPayload as exc:
        return _keep_unreadable(
            mapping, exc, raw=raw, method=method, content_type=content_type, query=query
        )
    try:
        result = map_payload(mapping, payload, default_region=get_settings().default_region)
    except MappingError as exc:
        return _keep_unmapped(
            row,
            str(exc),
            dedupe_key=payload_digest(payload),
            refuse_with=422 if mapping.on_unmapped == "refuse" else None,
            key="webhook.unmapped",
        )

    row.dedupe_key = result.dedupe_key
    if result.ignored:
        row.status = EventStatus.IGNORED
        row.error = result.ignored
    else:
        for event in result.events:
            if event.occurred_at is None:
                # The platform gave no time: when we received it is the best we know.
                event.occurred_at = row.received_at
        row.canonical = [e.to_json() for e in result.events]
    event_id, new = _store_or_none(row)
    if event_id is None:
        return UNAVAILABLE
    if not new:
        log.info("webhook.duplicate platform=%s id=%s", platform, event_id)
        return Intake(200, "webhook.duplicate", {"status": "duplicate", "id": event_id})
    if result.ignored:
        log.info("webhook.ignored platform=%s id=%s", platform, event_id)
        body = {"status": "ignored", "id": event_id, "reason": result.ignored}
        return Intake(200, "webhook.ignored", body)
    # Acknowledged once stored: publishing the task is the publisher thread's job
    # (worker/tasks/publish.py), and the outbox sweep's if that thread never gets to it.
    enqueue_event_soon(event_id)
    log.info("webhook.accepted platform=%s id=%s", platform, event_id)
    body = {"status": "accepted", "id": event_id, "events": len(result.events)}
    return Intake(200, "webhook.accepted", body)


_RESULTS = {
    "webhook.accepted": "accepted",
    "webhook.duplicate": "duplicate",
    "webhook.ignored": "ignored",
    "webhook.unmapped": "unmapped",
    "webhook.bad_body": "unmapped",
    "webhook.unsupported_media_type": "unmapped",
}


def count_delivery(platform: str, intake: Intake) -> Intake:
    """Count what became of a delivery (`callhook_webhook_deliveries`), and return it.

    "unmapped" is whatever was kept for replay, answered 200 or refused; "refused" is what
    was not stored. `platform` must be a known platform's name, never the URL's text.
    """
    result = _RESULTS.get(intake.key, "refused")
    WEBHOOK_DELIVERIES.inc(platform=platform, result=result, status=intake.status)
    return intake


def keep_unreadable(
    mapping: PlatformMapping,
    problem: BadPayload,
    *,
    raw: bytes,
    method: str,
    content_type: str,
    query: str = "",
) -> Intake:
    """An authenticated delivery whose body cannot be parsed: kept as unmapped, refused.

    Refused whatever the mapping's `on_unmapped` says: a body that is not the JSON or
    form it claims to be (or nests 100,000 levels deep) is not a platform's new event
    type but a broken sender, which its admin should see. Counted in the metrics.
    """
    intake = _keep_unreadable(
        mapping, problem, raw=raw, method=method, content_type=content_type, query=query
    )
    return count_delivery(mapping.platform, intake)


def ingest(
    mapping: PlatformMapping,
    payload: Any,
    *,
    raw: bytes,
    method: str,
    content_type: str,
    query: str = "",
) -> Intake:
    """Map and store one authenticated, parsed payload; enqueue it when new. Counted."""
    intake = _ingest(
        mapping, payload, raw=raw, method=method, content_type=content_type, query=query
    )
    return count_delivery(mapping.platform, intake)
