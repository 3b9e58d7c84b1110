"""Writing ended calls to the CRM, exactly once, whatever the retries and races, in batches.

The guarantees come from the database, not from the task queue:
- a lease on the call row lets one worker at a time talk to the CRM about it
  (a killed worker's lease simply expires);
- the CRM id is stored on the call, so every later sync updates in place;
- the state hash records what was sent, so a duplicate costs no request at all.

What the record is made of is the folded call (`fold.state_hash`) plus the agent's wrap-up
(outcome and note, from the agent page): `sync_hash` covers both, so a wrap-up saved after
the call was logged makes exactly one update of the same record, and one saved before (or
during) the first sync goes into the create (or the retry `_finish` asks for).

The database is also the queue. `sync_call(call_id)` flushes what is due: it claims, in
one transaction, up to 100 due calls (pending, ended, lease free; the triggering call
included) with their leases, writes them with one `CrmAdapter.log_calls`, stores each
call's result, and loops while due calls remain. At a trickle each task claims its own
call at once; under load the calls that came due meanwhile are taken together.

Deviation from "no timers", measured (bench/mixed_day.py): at HubSpot's own pace a flush
takes tens of milliseconds, so calls arriving a few per second never overlap a flush and
batches stay at one call (2.8 requests per call, the rate limiter only slows them down).
So, under load only (another call came due within the last second: `under_load`), a
call is held until it has been unchanged for `crm_batch_hold_s`, rounded up to a grid of
that many seconds so that the calls of one window wake together and share a flush. The
hold also lets a CDR that arrives right after the live end go into the create instead of
an update. At a trickle nothing waits.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import or_
from sqlmodel import Session, col, select

from worker.core.db import session_scope
from worker.core.fold import sync_hash
from worker.core.metrics import CRM_FLUSH_SIZE, CRM_SYNC_LATENCY
from worker.core.models import Call, CrmStatus, CrmSyncAttempt, utcnow
from worker.core.redis_conn import connect
from worker.crm import request_journal
from worker.crm.base import (
    CallSnapshot,
    CrmAdapter,
    CrmError,
    LogResult,
    PermanentCrmError,
    TransientCrmError,
)

LEASE = timedelta(minutes=2)
FLUSH_LIMIT = 100  # HubSpot's batch cap
MAX_SYNC_ATTEMPTS = 12  # about an hour of backoff before a call is marked failed
ARRIVALS_KEY = "callhook:crm:arrival"  # set for a second by each call that comes due
LOAD_WINDOW_S = 1.0


@dataclass
class SyncOutcome:
    state: str  # synced | unchanged | not_ended | busy | held | retry | failed
    retry_in: float | None = None
    error: str | None = None
    crm_id: str | None = None


@dataclass
class _Claimed:
    snapshot: CallSnapshot
    digest: str


def under_load(*, arrival: bool) -> bool:
    """True when a call came due within the last second; `arrival`: one just did (a new
    sync task, not a retry), which counts for the next second."""
    try:
        client = connect()
        pipe = client.pipeline()
        pipe.exists(ARRIVALS_KEY)
        if arrival:
            pipe.set(ARRIVALS_KEY, "1", px=int(LOAD_WINDOW_S * 1000))
        busy = pipe.execute()[0]
    except redis.RedisError:
        return False  # no Redis: no hold, every call at once
    return bool(busy)


def _held_until(updated_at: datetime, hold_s: float) -> datetime:
    """When a held call comes due: unchanged for `hold_s`, rounded up to the grid."""
    due = updated_at.timestamp() + hold_s
    return datetime.fromtimestamp(math.ceil(due / hold_s) * hold_s, tz=updated_at.tzinfo)


def _lease(call: Call, owner: str, now: datetime) -> _Claimed:
    call.crm_lease_until = now + LEASE
    call.crm_lease_owner = owner
    snapshot = CallSnapshot.of(call)
    if call.crm_id is None and call.crm_create_sent_at is None:
        call.crm_create_sent_at = now
    return _Claimed(snapshot, sync_hash(call))


def _claim(
    call_id: int | None, owner: str, log_unended: bool, hold_s: float
) -> tuple[SyncOutcome | None, list[_Claimed]]:
    """Claim the triggering call (when given and due) and up to 100 due calls in all, in
    one transaction: the triggering call's early outcome, and what was claimed."""
    early: SyncOutcome | None = None
    claimed: list[_Claimed] = []
    now = utcnow()
    with session_scope() as session:
        if call_id is not None:
            call = session.get(Call, call_id, with_for_update=True, populate_existing=True)
            if call is None or call.merged_into is not None or not (call.ended or log_unended):
                early = SyncOutcome("not_ended")
            elif call.crm_synced_hash == sync_hash(call) and call.crm_status in (
                CrmStatus.SYNCED,
                CrmStatus.DRY_RUN,
            ):
                early = SyncOutcome("unchanged", crm_id=call.crm_id)
            elif call.crm_status != CrmStatus.PENDING:
                # Failed (permanently, or out of retries) or synced: only new data, a
                # wrap-up or a replay makes it pending again. A stale task (held, or
                # queued twice by the outbox sweep) must not sync it once more.
                state = "failed" if call.crm_status == CrmStatus.FAILED else "unchanged"
                early = SyncOutcome(state, crm_id=call.crm_id)
            elif call.crm_lease_until and call.crm_lease_until > now:
                # Another flush has it (and retries it if it must), or it waits out a
                # backoff its flush set; look again once the lease is over, in case its
                # worker was killed (then nobody else would before the outbox sweep).
                wait = (call.crm_lease_until - now).total_seconds()
                early = SyncOutcome("busy", retry_in=wait + 1)
            elif hold_s > 0 and _held_until(call.updated_at, hold_s) > now:
                wait = (_held_until(call.updated_at, hold_s) - now).total_seconds()
                return SyncOutcome("held", retry_in=wait), []
            else:
                claimed.append(_lease(call, owner, now))
                session.add(call)
        stmt = (
            select(Call)
            .where(
                Call.crm_status == CrmStatus.PENDING,
                col(Call.merged_into).is_(None),
                or_(col(Call.crm_lease_until).is_(None), col(Call.crm_lease_until) < now),
            )
            .order_by(col(Call.updated_at))
            .limit(FLUSH_LIMIT - len(claimed))
            .with_for_update(skip_locked=True)
        )
        if not log_unended:
            stmt = stmt.where(col(Call.ended).is_(True))
        if hold_s > 0:
            # The calls whose grid point has passed (`_held_until` <= now), no more: a call
            # due a moment later waits for the next grid point with its window's calls.
            grid = math.floor(now.timestamp() / hold_s) * hold_s - hold_s
            stmt = stmt.where(col(Call.updated_at) <= datetime.fromtimestamp(grid, tz=now.tzinfo))
        if call_id is not None:
            stmt = stmt.where(col(Call.id) != call_id)
        for call in session.exec(stmt) if len(claimed) < FLUSH_LIMIT else []:
            if call.crm_synced_hash == sync_hash(call) and call.crm_status in (
                CrmStatus.SYNCED,
                CrmStatus.DRY_RUN,
            ):
                continue
            claimed.append(_lease(call, owner, now))
            session.add(call)
    return early, claimed


def _failures_in_a_row(session: Session, call_id: int) -> int:
    """Failed attempts since the last success, a 429 not counted (not the call's fault)."""
    rows = session.exec(
        select(CrmSyncAttempt.ok, CrmSyncAttempt.http_status)
        .where(CrmSyncAttempt.call_id == call_id)
        .order_by(col(CrmSyncAttempt.id).desc())
        .limit(MAX_SYNC_ATTEMPTS * 4)
    ).all()
    count = 0
    for ok, status in rows:
        if ok:
            break
        if status != 429:
            count += 1
    return count


def _finish(
    call_id: int,
    owner: str,
    *,
    digest: str,
    status: str | None,
    action: str,
    crm_id: str | None = None,
    contact_id: str | None = None,
    owner_id: str | None = None,
    contact_note: str | None = None,
    contact_name: str | None = None,
    task_id: str | None = None,
    error: str | None = None,
    http_status: int | None = None,
    nothing_created: bool = False,
    complete: bool = True,
    backoff: Callable[[int, float | None], float] | None = None,
    hint: float | None = None,
) -> tuple[bool, bool, float | None]:
    """Store the result and release the lease, or, with `backoff` (a transient failure),
    hold it for the call's backoff, which the flush that failed it retries; (newer data
    arrived meanwhile, retries exhausted, the backoff's seconds)."""
    with session_scope() as session:
        call = session.get(Call, call_id, with_for_update=True, populate_existing=True)
        assert call is not None
        exhausted, retry_in = False, None
        if backoff is not None:
            tries = _failures_in_a_row(session, call_id) + (0 if http_status == 429 else 1)
            retry_in = backoff(tries, hint)
            if tries >= MAX_SYNC_ATTEMPTS:
                exhausted, status = True, CrmStatus.FAILED
                error = f"gave up after {MAX_SYNC_ATTEMPTS} attempts: {error}"
        session.add(
            CrmSyncAttempt(
                call_id=call_id,
                action=action,
                ok=error is None,
                http_status=http_status,
                error=error,
                crm_id=crm_id or call.crm_id,
                # The requests sent so far that concerned this call, and the flush's time.
                duration_ms=request_journal.elapsed_ms(),
                requests=request_journal.entries_for(call_id),
            )
        )
        if nothing_created:
            call.crm_create_sent_at = None
        if crm_id:
            call.crm_id = crm_id
            call.crm_create_sent_at = None
            call.crm_contact_id = contact_id
            call.crm_owner_id = owner_id
            call.crm_contact_note = contact_note
            call.crm_task_id = task_id
            call.crm_contact_name = contact_name
            call.crm_synced_hash = digest if complete else None
            call.crm_error = None
        if error is not None:
            call.crm_error = error
        if status is not None:
            call.crm_status = status
        if call.crm_lease_owner == owner:
            call.crm_lease_until = None
            call.crm_lease_owner = None
            if retry_in is not None and not exhausted:
                # Not due before its backoff: no other flush takes it meanwhile.
                call.crm_lease_until = utcnow() + timedelta(seconds=retry_in)
        newer = crm_id is not None and sync_hash(call) != digest
        if newer:
            call.crm_status = CrmStatus.PENDING
        session.add(call)
        return newer, exhausted, retry_in


def sync_call(
    call_id: int,
    crm_for: Callable[[int], CrmAdapter],
    *,
    dry_run: bool,
    log_unended: bool = False,
    hold_s: float = 0.0,
    backoff: Callable[[int, float | None], float] | None = None,
) -> SyncOutcome:
    """Flush what is due, the triggering call (or live one, `log_unended`) included.

    The outcome is the triggering call's; its `retry_in`, when set, is when the task must
    run again: the triggering call's retry, or any claimed call's (this flush owns the
    retries of what it claimed). `backoff(failures, hint)` gives a failed call's delay.
    """
    owner = uuid.uuid4().hex
    mine, claimed = _claim(call_id, owner, log_unended, hold_s)
    if mine is not None and mine.state == "held":
        return mine
    retry_at: float | None = None
    while claimed:
        CRM_FLUSH_SIZE.observe(len(claimed))
        # The dry run stores each request with its call: one call per adapter.
        groups = [[c] for c in claimed] if dry_run else [claimed]
        for group in groups:
            outcomes = _flush(group, owner, crm_for, dry_run=dry_run, backoff=backoff)
            for cid, outcome in outcomes.items():
                if cid == call_id:
                    mine = outcome
                if outcome.state == "retry" and outcome.retry_in is not None:
                    retry_at = max(retry_at or 0.0, outcome.retry_in)
        _, claimed = _claim(None, owner, log_unended, hold_s)
    result = mine or SyncOutcome("busy")
    if retry_at is not None and result.state not in ("retry",):
        # The triggering call is done, others of its flush must retry: this task does.
        result = SyncOutcome("retry", retry_in=retry_at, error=result.error, crm_id=result.crm_id)
    elif result.state == "retry" and retry_at is not None:
        result.retry_in = max(result.retry_in or 0.0, retry_at)
    return result


def _flush(
    claimed: list[_Claimed],
    owner: str,
    crm_for: Callable[[int], CrmAdapter],
    *,
    dry_run: bool,
    backoff: Callable[[int, float | None], float] | None,
) -> dict[int, SyncOutcome]:
    """Write the claimed calls together and store each one's result."""
    delay = backoff or (lambda _tries, hint: hint if hint is not None else 1.0)
    crm = crm_for(claimed[0].snapshot.id)
    with request_journal.recording():
        results = crm.log_calls([c.snapshot for c in claimed])
        outcomes = {}
        for c in claimed:
            result = results.get(c.snapshot.id)
            if result is None:
                result = TransientCrmError("the CRM adapter said nothing about this call")
            if isinstance(result, PermanentCrmError) and len(claimed) > 1:
                # One bad input never blocks the others: it is tried once more alone, and
                # fails alone (a stale contact is looked up afresh on that path).
                with request_journal.about({c.snapshot.id}):
                    result = crm.log_calls([c.snapshot]).get(c.snapshot.id, result)
            outcomes[c.snapshot.id] = _store(c, owner, result, dry_run=dry_run, delay=delay)
    return outcomes


def _store(
    claimed: _Claimed,
    owner: str,
    result: LogResult | CrmError,
    *,
    dry_run: bool,
    delay: Callable[[int, float | None], float],
) -> SyncOutcome:
    """Record one call's result (the lease is ours) and say what its task must do."""
    snapshot, digest = claimed.snapshot, claimed.digest
    call_id = snapshot.id
    action = "update" if snapshot.crm_id else "create"
    if isinstance(result, CrmError):
        exc = result
        if exc.nothing_created is not None:
            unsent = exc.nothing_created
        elif isinstance(exc, TransientCrmError):
            unsent = exc.status == 429  # refused before HubSpot did anything
        else:
            # A refused request created nothing; an unreadable answer proves nothing.
            unsent = exc.status is not None and 400 <= exc.status < 500
        # A create already in doubt stays in doubt: an earlier attempt may have made it.
        unsent = unsent and not snapshot.create_in_doubt
        if isinstance(exc, TransientCrmError):
            _, exhausted, wait = _finish(
                call_id, owner, digest=digest, status=None, action=action, error=str(exc),
                http_status=exc.status, nothing_created=unsent, backoff=delay,
                hint=exc.retry_after,
            )  # fmt: skip
            if exhausted:
                return SyncOutcome("failed", error=str(exc))
            return SyncOutcome("retry", retry_in=wait, error=str(exc))
        _finish(
            call_id, owner, digest=digest, status=CrmStatus.FAILED, action=action,
            error=str(exc), http_status=exc.status, nothing_created=unsent,
        )  # fmt: skip
        return SyncOutcome("failed", error=str(exc))
    done = CrmStatus.DRY_RUN if dry_run else CrmStatus.SYNCED
    late = result.incomplete
    if late is not None:
        # The call record is written (its id is kept), a follow-up step failed: the sync
        # is not complete, so no hash is stored and the retry does the rest.
        done = CrmStatus.FAILED if isinstance(late, PermanentCrmError) else CrmStatus.PENDING
    transient = isinstance(late, TransientCrmError)
    newer, exhausted, retry_in = _finish(
        call_id,
        owner,
        backoff=delay if transient else None,
        hint=late.retry_after if isinstance(late, TransientCrmError) else None,
        digest=digest,
        status=done,
        action=result.action,
        crm_id=result.crm_id,
        contact_id=result.contact_id,
        owner_id=result.owner_id,
        contact_note=result.contact_note,
        contact_name=(result.contact_name or "")[:200] or None,
        task_id=result.task_id,
        error=f"after writing the call: {late}" if late is not None else None,
        http_status=late.status if late is not None else None,
        complete=late is None,
    )
    if late is None:
        CRM_SYNC_LATENCY.observe_since(snapshot.ended_at, action=result.action)
    if late is not None:
        if isinstance(late, PermanentCrmError) or exhausted:
            return SyncOutcome("failed", error=str(late), crm_id=result.crm_id)
        return SyncOutcome("retry", retry_in=retry_in, error=str(late), crm_id=result.crm_id)
    if newer:
        return SyncOutcome("retry", retry_in=0, crm_id=result.crm_id)
    return SyncOutcome("synced", crm_id=result.crm_id)
