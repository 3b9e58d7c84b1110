"""Thin Celery tasks: ids in, the plain functions of ``pipeline`` and ``call_logging`` do the work.

Retries happen here and only here: transient CRM errors come back with
exponential backoff and jitter (or the CRM's Retry-After), capped below the
broker's visibility timeout; permanent ones are recorded and stop.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from worker.core.backoff import exponential_delay
from worker.core.metrics import CRM_SYNCS
from worker.core.settings import get_settings
from worker.crm.factory import crm_for_call
from worker.crm.mapping_files import worker_mapping_files
from worker.tasks import pops
from worker.tasks.call_logging import sync_call, under_load
from worker.tasks.celery_app import app, max_retry_delay_s
from worker.tasks.pipeline import (
    FoldFailed,
    calls_to_sync,
    close_unended,
    events_to_enqueue,
    mark_enqueued,
    process_stored_event,
)
from worker.tasks.publish import LOG_CALL, PROCESS_EVENT

log = logging.getLogger("callhook.worker")

MAX_TASK_RETRIES = 500  # a bound for the flush task; calls give up on their own first


def backoff(retries: int, hint: float | None = None) -> float:
    """Seconds before the next try: the CRM's hint if given, else 2^n with full jitter."""
    if hint is not None and hint > 0:
        return min(max_retry_delay_s(), hint + random.uniform(0, 1))
    return exponential_delay(retries + 1, initial_s=1.0, cap_s=max_retry_delay_s())


def fold_retry_delay(attempts: int) -> float:
    """Seconds before folding an event again after its `attempts`-th failure: 1, 2, 4, 8 s.

    Short, because a fold that raises is nearly always a bug or bad data that no wait
    fixes (the database being down is retried apart, with `backoff`): the retries exist
    for the rare race, and the event must soon be `failed` and visible, not pending.
    """
    return min(max_retry_delay_s(), 2 ** max(attempts - 1, 0)) + random.uniform(0, 0.5)


@app.task(name=PROCESS_EVENT, bind=True, max_retries=20)
def process_event(self: Any, event_id: int) -> None:  # self: Celery's Task (untyped)
    """Fold one stored event; the attempts are counted on its row (see `pipeline`).

    Celery's own retry count is not the bound: the outbox sweep may enqueue the event
    again as a new task, so only the row's `attempts` sees every try.
    """
    try:
        files = worker_mapping_files()
        result = process_stored_event(event_id, files.agents, log_unended=_logs_at_start())
    except OperationalError as exc:  # database briefly unavailable
        raise self.retry(countdown=backoff(self.request.retries), exc=exc) from exc
    except FoldFailed as exc:
        if exc.final:
            return  # marked failed, with its reason: `callhook events replay` once fixed
        raise self.retry(countdown=fold_retry_delay(exc.attempts), exc=exc) from exc
    # Pops first: the phone is ringing, the CRM log can wait a few milliseconds.
    try:
        for action in result.pops:
            if action.ring_email:
                screen_pop.apply_async((action.call_id, action.ring_email, result.received_at))
        updates = {a.call_id for a in result.pops if a.update}
        if updates:
            pops.update(updates)
    except RedisError as exc:  # a missed pop must not block the call log
        log.warning("pop.failed event=%s error=%s", event_id, type(exc).__name__)
    for call_id in result.due:
        log_call.apply_async((call_id,))


@app.task(name="callhook.screen_pop", ignore_result=True)
def screen_pop(call_id: int, email: str, received_at: float | None = None) -> None:
    """Look the caller up and show the card; never retried (the ringing would be over).

    `received_at` (epoch seconds) is when the ringing delivery arrived, for the pop's
    latency; tasks queued before it was passed have none.
    """
    pops.ring(call_id, email, received_at=received_at)


@app.task(name=LOG_CALL, bind=True, max_retries=None)
def log_call(self: Any, call_id: int) -> str:  # self: Celery's Task (untyped)
    """Flush what is due, this call included (`call_logging.sync_call`).

    Retries count per call, on its attempts (`call_logging.MAX_SYNC_ATTEMPTS`, a 429 not
    charged): this task retries whenever a call of its flush must, and a hold under load
    is a wait, not a failure.
    """
    settings = get_settings()
    hold = settings.crm_batch_hold_s
    # A new task tells whether calls are coming due under load; a retry (a held call
    # waking on its grid point, a backoff) keeps the hold, which changes nothing for a
    # call unchanged for longer than the hold.
    if hold > 0 and self.request.retries == 0 and not under_load(arrival=True):
        hold = 0.0
    outcome = sync_call(
        call_id,
        crm_for_call,
        dry_run=settings.dry_run,
        log_unended=_logs_at_start(),
        hold_s=hold,
        backoff=lambda failures, hint: backoff(max(0, failures - 1), hint),
    )
    log.info(
        "crm.sync call=%s state=%s crm_id=%s error=%s",
        call_id, outcome.state, outcome.crm_id, outcome.error,
    )  # fmt: skip
    CRM_SYNCS.inc(state=outcome.state)
    if outcome.state in ("retry", "held") or outcome.retry_in is not None:
        if self.request.retries + 1 >= MAX_TASK_RETRIES:
            # Unreachable in practice (each call gives up after its own attempts); the
            # outbox sweep takes over whatever is still pending.
            return outcome.state
        wait = outcome.retry_in if outcome.retry_in is not None else backoff(self.request.retries)
        raise self.retry(countdown=min(max_retry_delay_s(), max(0.0, wait)))
    return outcome.state


def _logs_at_start() -> bool:
    hubspot = worker_mapping_files().hubspot
    return hubspot is not None and hubspot.log_at == "start"


@app.task(name="callhook.sweep_outbox")
def sweep_outbox() -> dict[str, int]:
    """Enqueue what was stored but never enqueued, syncs whose task was lost, and close
    calls whose end never came."""
    settings = get_settings()
    hubspot = worker_mapping_files().hubspot
    if hubspot is not None:
        closed = close_unended(timedelta(minutes=hubspot.close_unended_after_minutes))
        for event_id in closed:
            process_event.apply_async((event_id,))
        mark_enqueued(closed)
        if closed:
            log.info("outbox.closed_unended calls=%d", len(closed))
    grace = timedelta(seconds=settings.outbox_grace_s)
    # An event queued but still not folded after twice the visibility timeout was lost
    # with the broker's data (the broker itself brings back a dead worker's tasks).
    stale = timedelta(seconds=2 * settings.broker_visibility_timeout_s)
    events = events_to_enqueue(grace, stale=stale)
    for event_id in events:
        process_event.apply_async((event_id,))
    mark_enqueued(events)
    calls = calls_to_sync(grace=timedelta(seconds=settings.crm_resync_after_s))
    for call_id in calls:
        log_call.apply_async((call_id,))
    if events or calls:
        log.info("outbox.swept events=%d calls=%d", len(events), len(calls))
    return {"events": len(events), "calls": len(calls)}
