"""Writing one ended call to the CRM, exactly once, whatever the retries and races.

The guarantees come from the database, not from the task queue:
- a lease on the call row lets one worker at a time talk to the CRM about it
  (a killed worker's lease simply expires);
- the CRM id is stored on the call, so every later sync updates in place;
- the state hash records what was sent, so a duplicate costs no request at all.

What the record is made of is the folded call (`fold.state_hash`) plus the agent's wrap-up
(outcome and note, from the agent page): `sync_hash` covers both, so a wrap-up saved after
the call was logged makes exactly one update of the same record, and one saved before (or
during) the first sync goes into the create (or the retry `_finish` asks for).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from worker.core.db import session_scope
from worker.core.fold import sync_hash
from worker.core.metrics import CRM_SYNC_LATENCY
from worker.core.models import Call, CrmStatus, CrmSyncAttempt, utcnow
from worker.crm import request_journal
from worker.crm.base import CallSnapshot, CrmAdapter, PermanentCrmError, TransientCrmError

LEASE = timedelta(minutes=2)


@dataclass
class SyncOutcome:
    state: str  # synced | unchanged | not_ended | busy | retry | failed
    retry_in: float | None = None
    error: str | None = None
    crm_id: str | None = None


def _claim(
    call_id: int, owner: str, log_unended: bool
) -> tuple[SyncOutcome | None, CallSnapshot | None, str]:
    with session_scope() as session:
        call = session.get(Call, call_id, with_for_update=True, populate_existing=True)
        if call is None or call.merged_into is not None or not (call.ended or log_unended):
            return SyncOutcome("not_ended"), None, ""
        digest = sync_hash(call)
        if call.crm_synced_hash == digest and call.crm_status in (
            CrmStatus.SYNCED,
            CrmStatus.DRY_RUN,
        ):
            return SyncOutcome("unchanged", crm_id=call.crm_id), None, digest
        now = utcnow()
        if call.crm_lease_until and call.crm_lease_until > now and call.crm_lease_owner != owner:
            wait = (call.crm_lease_until - now).total_seconds()
            return SyncOutcome("busy", retry_in=wait + 1), None, digest
        call.crm_lease_until = now + LEASE
        call.crm_lease_owner = owner
        snapshot = CallSnapshot.of(call)
        if call.crm_id is None and call.crm_create_sent_at is None:
            call.crm_create_sent_at = now
        session.add(call)
        return None, snapshot, digest


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
) -> bool:
    """Store the result and release the lease; True when newer data arrived meanwhile."""
    with session_scope() as session:
        call = session.get(Call, call_id, with_for_update=True, populate_existing=True)
        assert call is not None
        session.add(
            CrmSyncAttempt(
                call_id=call_id,
                action=action,
                ok=error is None,
                http_status=http_status,
                error=error,
                crm_id=crm_id or call.crm_id,
                # The requests sent so far in this attempt, and its time (request_journal).
                duration_ms=request_journal.elapsed_ms(),
                requests=request_journal.entries(),
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
        newer = crm_id is not None and sync_hash(call) != digest
        if newer:
            call.crm_status = CrmStatus.PENDING
        session.add(call)
        return newer


def sync_call(
    call_id: int,
    crm_for: Callable[[int], CrmAdapter],
    *,
    dry_run: bool,
    log_unended: bool = False,
) -> SyncOutcome:
    """Create or update the CRM record of one ended call (or live one, `log_unended`)."""
    owner = uuid.uuid4().hex
    early, snapshot, digest = _claim(call_id, owner, log_unended)
    if early is not None:
        return early
    assert snapshot is not None
    with request_journal.recording():
        return _log_claimed(call_id, owner, snapshot, digest, crm_for, dry_run=dry_run)


def _log_claimed(
    call_id: int,
    owner: str,
    snapshot: CallSnapshot,
    digest: str,
    crm_for: Callable[[int], CrmAdapter],
    *,
    dry_run: bool,
) -> SyncOutcome:
    """Write a claimed call to the CRM and store what happened (the lease is ours)."""
    action = "update" if snapshot.crm_id else "create"
    try:
        result = crm_for(call_id).log_call(snapshot)
    except TransientCrmError as exc:
        _finish(
            call_id,
            owner,
            digest=digest,
            status=None,
            action=action,
            error=str(exc),
            http_status=exc.status,
            nothing_created=exc.status == 429,  # refused before HubSpot did anything
        )
        return SyncOutcome("retry", retry_in=exc.retry_after, error=str(exc))
    except PermanentCrmError as exc:
        _finish(
            call_id,
            owner,
            digest=digest,
            status=CrmStatus.FAILED,
            action=action,
            error=str(exc),
            http_status=exc.status,
            # A refused request created nothing; an unreadable answer proves nothing.
            nothing_created=exc.status is not None and 400 <= exc.status < 500,
        )
        return SyncOutcome("failed", error=str(exc))
    done = CrmStatus.DRY_RUN if dry_run else CrmStatus.SYNCED
    late = result.incomplete
    if late is not None:
        # The call record is written (its id is kept), a follow-up step failed: the sync
        # is not complete, so no hash is stored and the retry does the rest.
        done = CrmStatus.FAILED if isinstance(late, PermanentCrmError) else CrmStatus.PENDING
    newer = _finish(
        call_id,
        owner,
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
        if isinstance(late, PermanentCrmError):
            return SyncOutcome("failed", error=str(late), crm_id=result.crm_id)
        retry_in = late.retry_after if isinstance(late, TransientCrmError) else None
        return SyncOutcome("retry", retry_in=retry_in, error=str(late), crm_id=result.crm_id)
    if newer:
        return SyncOutcome("retry", retry_in=0, crm_id=result.crm_id)
    return SyncOutcome("synced", crm_id=result.crm_id)


def give_up(call_id: int, reason: str) -> None:
    """Retries exhausted: the call is marked failed, visible and replayable."""
    with session_scope() as session:
        call = session.get(Call, call_id, with_for_update=True, populate_existing=True)
        if call is not None and call.crm_status != CrmStatus.SYNCED:
            call.crm_status = CrmStatus.FAILED
            call.crm_error = reason
            session.add(call)
