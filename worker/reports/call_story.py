"""The operator's view of calls: the searchable list and one call's whole story.

Everything here reads callhook's own tables (no HubSpot request on a page load), bounded
by limits, so the console stays fast and works in a dry run. The web layer
(``webhook_receiver/web/console/calls.py``) parses nothing itself and formats little: it
hands the query parameters to `parse_filters`, and renders `list_calls` / `call_story`.

Statuses as the operator reads them (`STATUSES`), from ``calls.crm_status``:

- ``logged``: synced to HubSpot;
- ``pending``: not logged yet, waiting for the call to end (``waiting``) or for the sync
  that is due (``pending``);
- ``failed``: a permanent HubSpot error or retries exhausted (``crm_error`` says which);
- ``dry_run``: recorded on the dry-run page, not sent;
- ``not_logged``: callhook has no policy that *skips* a call (``worker/tasks/call_logging.py``
  writes every ended call; ``worker/crm/hubspot.py`` only chooses the contact). What a
  policy decides is the contact: an unknown caller under ``unknown_caller: no_contact``,
  one of the company's own numbers, an internal call, are written *without a contact*,
  with the reason in ``crm_contact_note``. So ``not_logged`` selects those calls (synced or
  dry-run, no ``crm_contact_id``): "not logged on any contact, by policy". The rows still
  say ``logged`` (they are in HubSpot), with a "no contact" mark beside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import phonenumbers
import redis
import sqlalchemy as sa
from sqlmodel import Session, col, select

from worker.core.db import get_engine
from worker.core.events import Direction
from worker.core.models import (
    Call,
    CallEventRecord,
    CallPop,
    CrmStatus,
    CrmSyncAttempt,
    DialAttempt,
    DryRunRequest,
    WebhookEvent,
)
from worker.core.numbers import display, valid_e164
from worker.core.redaction import Redactor, secret_values
from worker.core.settings import get_settings

PAGE_SIZE = 50
# A story's bounds: a call has a handful of each; a runaway one must not take the page down.
MAX_DELIVERIES = 300
MAX_ATTEMPTS = 200
MAX_DRY_RUN = 200
MAX_POPS = 100
MAX_DIALS = 20
MAX_LEGS = 50
MAX_MERGE_HOPS = 5
# A body is kept whole in the database (up to MAX_BODY_BYTES); on the page, its start.
MAX_BODY_CHARS = 20_000

REDACTED = "[redacted]"
# The calls list's query parameters (`from`/`to` are UTC days, `before` the keyset).
FILTER_PARAMS = ("platform", "direction", "agent", "number", "status", "from", "to", "before")
STATUSES: dict[str, str] = {
    "logged": "logged",
    "pending": "pending",
    "failed": "failed",
    "dry_run": "dry run",
    "not_logged": "no contact (policy)",
}
_STATUS_OF: dict[str, str] = {
    CrmStatus.SYNCED: "logged",
    CrmStatus.WAITING: "pending",
    CrmStatus.PENDING: "pending",
    CrmStatus.FAILED: "failed",
    CrmStatus.DRY_RUN: "dry_run",
}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ID = re.compile(r"[0-9]{1,18}")
_NUMBER_CHARS = re.compile(r"[0-9+()./\s-]{1,40}")


class FilterError(ValueError):
    """A search parameter the list cannot use: the reason is shown with the 400."""


@dataclass(frozen=True)
class CallFilters:
    """The calls list's search, as validated values (each None when not asked for)."""

    platform: str | None = None
    direction: str | None = None
    agent: str | None = None
    number: str | None = None
    status: str | None = None
    since: date | None = None  # `from`, inclusive, 00:00 UTC
    until: date | None = None  # `to`, inclusive, through 24:00 UTC
    before: int | None = None  # keyset: calls with a smaller id (older)

    def query_args(self, **override: Any) -> dict[str, Any]:
        """The parameters that give this search again (for the "older" link)."""
        values = {
            "platform": self.platform,
            "direction": self.direction,
            "agent": self.agent,
            "number": self.number,
            "status": self.status,
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "before": self.before,
        }
        values.update(override)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _text(args: Mapping[str, str], name: str, limit: int) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > limit:
        raise FilterError(f"{name} is longer than {limit} characters")
    return value or None


def _day(args: Mapping[str, str], name: str) -> date | None:
    value = _text(args, name, 10)
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(
            f"{name} must be a date written YYYY-MM-DD (UTC), not {value!r}"
        ) from None


def parse_filters(args: Mapping[str, str], platforms: Iterable[str]) -> CallFilters:
    """The search from the page's query parameters; FilterError says what is wrong."""
    platform = _text(args, "platform", 64)
    if platform is not None and platform not in set(platforms):
        raise FilterError(f"unknown platform {platform!r}")
    direction = _text(args, "direction", 16)
    if direction is not None and direction not in {d.value for d in Direction}:
        raise FilterError("direction must be inbound, outbound or internal")
    status = _text(args, "status", 16)
    if status is not None and status not in STATUSES:
        raise FilterError(f"status must be one of {', '.join(STATUSES)}")
    number = _text(args, "number", 40)
    if number is not None and (
        not _NUMBER_CHARS.fullmatch(number) or len(re.sub(r"\D", "", number)) < 3
    ):
        raise FilterError("number must be at least 3 digits (spaces, dots, dashes, + allowed)")
    since, until = _day(args, "from"), _day(args, "to")
    if since and until and since > until:
        raise FilterError("from is after to")
    before = _text(args, "before", 18)
    if before is not None and not _ID.fullmatch(before):
        raise FilterError("before must be a call id (digits)")
    return CallFilters(
        platform=platform,
        direction=direction,
        agent=_text(args, "agent", 200),
        number=number,
        status=status,
        since=since,
        until=until,
        before=int(before) if before else None,
    )


def _number_clause(typed: str, region: str) -> Any:
    """A whole number: the calls with it (the index on ``external_number``). A part of one
    ("5678", "06 12"): the calls whose stored number or number as received contains those
    digits (a scan, bounded by the page's limit like every list query)."""
    e164 = valid_e164(typed, region)  # calls store that form, indexed
    if e164 is not None:
        return Call.external_number == e164
    digits = re.sub(r"\D", "", typed)
    return sa.or_(
        Call.external_number.contains(digits, autoescape=True),  # type: ignore[union-attr]
        Call.external_number_raw.contains(digits, autoescape=True),  # type: ignore[union-attr]
    )


def _status_clause(status: str) -> Any:
    if status == "logged":
        return Call.crm_status == CrmStatus.SYNCED
    if status == "pending":
        return Call.crm_status.in_([CrmStatus.WAITING, CrmStatus.PENDING])  # type: ignore[attr-defined]
    if status == "not_logged":
        return sa.and_(
            Call.crm_status.in_([CrmStatus.SYNCED, CrmStatus.DRY_RUN]),  # type: ignore[attr-defined]
            Call.crm_contact_id.is_(None),  # type: ignore[union-attr]
        )
    return Call.crm_status == status  # failed, dry_run: the same word


def _time_clause(since: date | None, until: date | None) -> list[Any]:
    """Calls by when they started (indexed), or ended for those whose start never came."""
    clauses = []
    if since is not None:
        start = datetime.combine(since, datetime.min.time(), tzinfo=UTC)
        clauses.append(
            sa.or_(
                col(Call.started_at) >= start,
                sa.and_(col(Call.started_at).is_(None), col(Call.ended_at) >= start),
            )
        )
    if until is not None:
        end = datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        clauses.append(
            sa.or_(
                col(Call.started_at) < end,
                sa.and_(col(Call.started_at).is_(None), col(Call.ended_at) < end),
            )
        )
    return clauses


def _where(filters: CallFilters, region: str) -> list[Any]:
    clauses: list[Any] = [Call.merged_into.is_(None)]  # type: ignore[union-attr]
    if filters.platform:
        clauses.append(Call.platform == filters.platform)
    if filters.direction:
        clauses.append(Call.direction == filters.direction)
    if filters.agent:
        clauses.append(sa.func.lower(Call.agent).contains(filters.agent.lower(), autoescape=True))
    if filters.number:
        clauses.append(_number_clause(filters.number, region))
    if filters.status:
        clauses.append(_status_clause(filters.status))
    if filters.before is not None:
        clauses.append(Call.id < filters.before)  # type: ignore[operator]
    return clauses + _time_clause(filters.since, filters.until)


# -- HubSpot links -----------------------------------------------------------------------


@dataclass(frozen=True)
class HubSpotLinks:
    """Builds record URLs (https://<host>/contacts/<portal>/record/<type>/<id>) when the
    portal is known: ``HUBSPOT_PORTAL_ID``, or HubSpot's account details, asked for at most
    once a day and shared through Redis with the screen-pops (`pops.account_details`). If
    HubSpot does not answer, the pages show record ids without links."""

    host: str
    portal: str | None

    @classmethod
    def current(cls) -> HubSpotLinks:
        from worker.core.redis_conn import connect
        from worker.crm.base import CrmError
        from worker.crm.factory import crm_for_lookups
        from worker.tasks.pops import hubspot_portal

        settings = get_settings()
        if settings.hubspot_portal_id:
            return cls("app.hubspot.com", settings.hubspot_portal_id)
        if settings.dry_run:  # a dry run has no portal to link to
            return cls("app.hubspot.com", None)
        try:
            host, portal = hubspot_portal(crm_for_lookups(), connect(), "")
        except (CrmError, redis.RedisError, ValueError):
            return cls("app.hubspot.com", None)
        return cls(host, portal or None)

    def url(self, record_id: str | None, object_type: str) -> str | None:
        from worker.tasks.pops import record_link

        return record_link(self.host, self.portal or "", object_type, record_id)

    def call(self, crm_id: str | None) -> str | None:
        return self.url(crm_id, "0-48")

    def contact(self, contact_id: str | None) -> str | None:
        return self.url(contact_id, "0-1")


# -- the list ------------------------------------------------------------------------------


def status_of(call: Call) -> str:
    """The operator's word for a call's CRM state (see the module's docstring)."""
    return _STATUS_OF.get(call.crm_status, call.crm_status)


def without_contact(call: Call) -> bool:
    """Logged (or recorded) with no contact: the policy's choice, `crm_contact_note` says why."""
    return call.crm_status in (CrmStatus.SYNCED, CrmStatus.DRY_RUN) and not call.crm_contact_id


def when(call: Call) -> datetime:
    """When a call happened, as the list shows it (a call seen only by its end has no start)."""
    return call.started_at or call.answered_at or call.ended_at or call.updated_at


def duration_text(seconds: int | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(max(0, seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def number_text(call: Call) -> str:
    try:
        return display(call.external_number, call.external_number_raw)
    except phonenumbers.NumberParseException:
        return call.external_number or call.external_number_raw or ""


@dataclass(frozen=True)
class CallRow:
    call: Call
    status: str
    no_contact: bool
    record_url: str | None


@dataclass(frozen=True)
class CallPage:
    rows: list[CallRow]
    older: int | None  # the `before` of the next page, None on the last one


def list_calls(filters: CallFilters, links: HubSpotLinks | None = None) -> CallPage:
    """One page of calls, newest first (keyset on id: stable while calls keep arriving)."""
    links = links or HubSpotLinks.current()
    region = get_settings().default_region
    with Session(get_engine()) as session:
        calls = list(
            session.exec(
                select(Call)
                .where(*_where(filters, region))
                .order_by(Call.id.desc())  # type: ignore[union-attr]
                .limit(PAGE_SIZE + 1)
            )
        )
    more = len(calls) > PAGE_SIZE
    calls = calls[:PAGE_SIZE]
    rows = [CallRow(c, status_of(c), without_contact(c), links.call(c.crm_id)) for c in calls]
    return CallPage(rows, calls[-1].id if more and calls else None)


# -- redaction -----------------------------------------------------------------------------


def make_redactor(extra_secrets: Iterable[str] = ()) -> Redactor:
    """The story page's redactor: every configured secret (`secret_values`) plus the
    webhook secrets the receiver passes in (the mappings' ``auth.secret_envs``), 8 chars
    or longer, and the values of credential-looking keys, shown as ``[redacted]``."""
    return Redactor([*secret_values(get_settings()), *extra_secrets], REDACTED)


# -- one call's story ----------------------------------------------------------------------


@dataclass
class Delivery:
    """One webhook delivery that fed the call, and the canonical events it became."""

    kind = "delivery"
    at: datetime
    id: int
    platform: str
    method: str
    content_type: str
    status: str
    error: str
    query: str
    body: str
    truncated: bool
    events: list[tuple[str, str]]  # (stage, canonical event as pretty JSON)
    leg: str | None  # the merged leg's platform call id it was first folded into
    processed_at: datetime | None

    @property
    def ok(self) -> bool:
        return self.status in ("processed", "pending", "ignored")


@dataclass
class Attempt:
    """One attempt to write the call to HubSpot, with its requests when recorded."""

    kind = "attempt"
    at: datetime
    action: str
    ok: bool
    http_status: int | None
    error: str
    crm_id: str | None
    duration_ms: int | None
    requests: list[dict[str, Any]]
    leg: str | None


@dataclass
class DryRun:
    kind = "dry_run"
    at: datetime
    method: str
    path: str
    body: str
    ok = True


@dataclass
class Pop:
    kind = "pop"
    at: datetime
    agent_email: str
    contact_name: str | None
    ok = True


@dataclass
class Dial:
    kind = "dial"
    at: datetime
    agent_email: str
    requested: str
    destination: str | None
    result: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.result == "placed"


@dataclass(frozen=True)
class Verdict:
    """The answer to "is this call in HubSpot, on the right contact, and if not why"."""

    tone: str  # ok | bad | warn | muted (the stylesheet's badge/answer classes)
    text: str
    retry: bool = False  # point to the Problems page, where a failed call is retried


@dataclass
class Story:
    call: Call
    verdict: Verdict
    entries: list[Any]
    legs: list[Call]
    status: str
    record_url: str | None
    contact_url: str | None
    number: str
    crm_error: str
    capped: list[str] = field(default_factory=list)  # what hit its bound (say so)


def root_of(call_id: int) -> tuple[int | None, bool]:
    """The call a (possibly merged) call id belongs to, and whether that is another call."""
    with Session(get_engine()) as session:
        current = session.get(Call, call_id)
        if current is None:
            return None, False
        for _ in range(MAX_MERGE_HOPS):
            if current.merged_into is None:
                break
            parent = session.get(Call, current.merged_into)
            if parent is None:
                break
            current = parent
        return current.id, current.id != call_id


def _deliveries(
    session: Session, ids: list[int], legs: dict[int, str], redactor: Redactor, capped: list[str]
) -> list[Delivery]:
    records = list(
        session.exec(
            select(CallEventRecord)
            .where(CallEventRecord.call_id.in_(ids))  # type: ignore[attr-defined]
            .order_by(CallEventRecord.id)  # type: ignore[arg-type]
            .limit(MAX_DELIVERIES * 4)
        )
    )
    by_event: dict[int, list[CallEventRecord]] = {}
    for record in records:
        by_event.setdefault(record.webhook_event_id, []).append(record)
    if len(by_event) > MAX_DELIVERIES:
        capped.append(f"deliveries (the first {MAX_DELIVERIES})")
    wanted = sorted(by_event)[:MAX_DELIVERIES]
    events = session.exec(
        select(WebhookEvent).where(WebhookEvent.id.in_(wanted))  # type: ignore[union-attr]
    ).all()
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
            .where(CrmSyncAttempt.call_id.in_(ids))  # type: ignore[attr-defined]
            .order_by(CrmSyncAttempt.id.desc())  # type: ignore[union-attr]
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
        .where(DryRunRequest.call_id.in_(ids))  # type: ignore[union-attr]
        .order_by(DryRunRequest.id.desc())  # type: ignore[union-attr]
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
        .where(CallPop.call_id.in_(ids))  # type: ignore[attr-defined]
        .order_by(CallPop.id)  # type: ignore[arg-type]
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
        .order_by(DialAttempt.id)  # type: ignore[arg-type]
        .limit(MAX_DIALS)
    ).all()
    return [
        Dial(d.at, d.agent_email, d.requested, d.destination, d.result, redactor.text(d.reason))
        for d in rows
    ]


def _last_attempt(entries: list[Any]) -> Attempt | None:
    attempts = [e for e in entries if isinstance(e, Attempt)]
    return attempts[-1] if attempts else None


def _stamp(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"


def verdict(call: Call, entries: list[Any], redactor: Redactor) -> Verdict:
    """One plain sentence (or two) an operator can act on, from the call and its story."""
    error = redactor.text(call.crm_error)
    status = call.crm_status
    if status == CrmStatus.SYNCED:
        return _logged_verdict(call, error)
    if status == CrmStatus.DRY_RUN:
        sent = sum(1 for e in entries if isinstance(e, DryRun))
        on = (
            f" on contact {call.crm_contact_name or call.crm_contact_id}"
            if call.crm_contact_id
            else ""
        )
        return Verdict(
            "muted",
            f"Dry run: recorded, not sent ({sent} HubSpot request{'s' * (sent != 1)} "
            f"recorded{on}). Set HUBSPOT_ACCESS_TOKEN to send calls.",
        )
    if status == CrmStatus.FAILED:
        return Verdict("bad", f"Failed: {error or 'no error was recorded'}", retry=True)
    if status == CrmStatus.PENDING:
        return _pending_verdict(call, entries)
    deliveries = [e for e in entries if isinstance(e, Delivery)]
    last = deliveries[-1] if deliveries else None
    said = f"{last.events[-1][0] or 'an event'}" if last and last.events else call.stage
    return Verdict(
        "warn",
        f"Not logged yet: the call has not ended (last event {said}, received "
        f"{_stamp(last.at if last else call.updated_at)}). It is logged when the platform "
        "reports its end.",
    )


def _logged_verdict(call: Call, error: str) -> Verdict:
    number = number_text(call)
    if call.crm_contact_id:
        name = call.crm_contact_name or f"contact {call.crm_contact_id}"
        text = (
            f"Logged in HubSpot as call {call.crm_id} on contact {name} "
            f"(matched by number {number})."
        )
        if call.crm_contact_note:
            text += f" Note: {call.crm_contact_note}."
        tone = "ok"
    else:
        reason = call.crm_contact_note or (
            f"no HubSpot contact has the number {number}"
            if call.external_number
            else "the platform gave no caller number"
        )
        text = f"Logged without a contact (call {call.crm_id}): {reason}."
        tone = "warn"
    if error:
        text += f" Last problem: {error}."
    return Verdict(tone, text)


def _pending_verdict(call: Call, entries: list[Any]) -> Verdict:
    last = _last_attempt(entries)
    if call.crm_lease_until and call.crm_lease_until > datetime.now(UTC):
        return Verdict("warn", "Not logged yet: a worker is writing it to HubSpot right now.")
    if last is not None and not last.ok:
        code = f" {last.http_status}" if last.http_status else ""
        return Verdict(
            "warn",
            f"Not logged yet: HubSpot refused the last attempt ({_stamp(last.at)}){code}: "
            f"{last.error}. The worker retries it by itself.",
        )
    return Verdict(
        "warn",
        f"Not logged yet: the call ended ({_stamp(call.ended_at)}) and its sync is queued; "
        "the worker writes it shortly (the outbox sweep re-queues a lost one).",
    )


def call_story(
    call_id: int, extra_secrets: Iterable[str] = (), links: HubSpotLinks | None = None
) -> Story | None:
    """Everything callhook knows about one (unmerged) call, in time order; None if unknown."""
    redactor = make_redactor(extra_secrets)
    links = links or HubSpotLinks.current()
    capped: list[str] = []
    with Session(get_engine()) as session:
        call = session.get(Call, call_id)
        if call is None:
            return None
        legs = list(
            session.exec(
                select(Call).where(Call.merged_into == call_id).order_by(Call.id).limit(MAX_LEGS)  # type: ignore[arg-type]
            )
        )
        leg_names = {leg.id or 0: leg.platform_call_id for leg in legs}
        ids = [call_id, *leg_names]
        entries: list[Any] = [
            *_deliveries(session, ids, leg_names, redactor, capped),
            *_attempts(session, ids, leg_names, redactor, capped),
            *_dry_runs(session, ids, redactor),
            *_pops(session, ids),
            *_dials(session, call, redactor),
        ]
    entries.sort(key=lambda e: e.at)
    return Story(
        call=call,
        verdict=verdict(call, entries, redactor),
        entries=entries,
        legs=legs,
        status=status_of(call),
        record_url=links.call(call.crm_id),
        contact_url=links.contact(call.crm_contact_id),
        number=number_text(call),
        crm_error=redactor.text(call.crm_error),
        capped=capped,
    )


def stamp(moment: datetime | None) -> str:
    """How the console writes a time: UTC, to the second."""
    return _stamp(moment) if moment else ""
