"""Queueing a call's CRM sync again: the one way an operator retries a call.

`callhook calls replay ID` and the console's Retry button both end here, so both refuse
the same calls for the same reasons and both survive a broker outage the same way.

Why a retry forgets the state hash: a call marked ``failed`` kept the hash of the last
complete sync (if any), and `call_logging.sync_call` skips a call whose hash matches; the
operator asked for a sync, so the next run must talk to the CRM. Exactly-once is still
the database's job (the lease, ``crm_id``, ``crm_create_sent_at``): a retry of a call
already in HubSpot updates that record, it never creates a second one.
"""

from __future__ import annotations

import logging

from worker.core.db import session_scope
from worker.core.models import Call, CrmStatus

log = logging.getLogger("callhook.crm")


class CallNotRetryable(ValueError):
    """The call exists but a sync cannot be queued now (not ended, or a merged leg)."""


def _mark_pending(call_id: int) -> None:
    """Make the call due for a sync, or raise why it cannot be (LookupError: no such call)."""
    with session_scope() as session:
        call = session.get(Call, call_id, with_for_update=True, populate_existing=True)
        if call is None:
            raise LookupError(f"no call {call_id}")
        if call.merged_into is not None:
            raise CallNotRetryable(
                f"call {call_id} is a leg of call {call.merged_into}: retry that call instead"
            )
        if not call.ended:
            raise CallNotRetryable(f"call {call_id} has not ended yet")
        call.crm_status = CrmStatus.PENDING
        call.crm_synced_hash = None
        session.add(call)


def _enqueue(call_id: int) -> bool:
    """Publish the sync task; False when the broker is down (the outbox sweep takes over).

    ``retry=False``, as for webhooks: a dead broker must fail the publish at once, not hold
    an operator's page (or a CLI) for the broker's retry policy.
    """
    from worker.tasks.celery_app import configure
    from worker.tasks.publish import enqueue_log_call

    configure()
    try:
        enqueue_log_call(call_id)
    except Exception as exc:  # kombu raises many types for a dead broker
        log.warning("crm.retry_enqueue_failed call=%s error=%s", call_id, type(exc).__name__)
        return False
    return True


def retry_call(call_id: int) -> str:
    """Queue call `call_id` for a CRM sync again; the sentence to show the operator.

    Raises LookupError when there is no such call, and CallNotRetryable (a ValueError)
    when it has not ended or is a merged leg. A broker outage is not an error: the call
    is left ``pending`` and `tasks.sweep_outbox` queues it after CRM_RESYNC_AFTER_S.
    """
    _mark_pending(call_id)
    log.info("crm.retry_requested call=%s", call_id)
    if _enqueue(call_id):
        return f"call {call_id} queued for a CRM sync"
    return f"call {call_id} marked for a CRM sync; broker down: the outbox sweep will queue it"
