"""Publishing tasks by name: what the web process needs of Celery, without the tasks.

The receiver, the replay and the agent page only *publish* (`enqueue_event`,
`enqueue_log_call`); importing ``worker.tasks.celery_tasks`` for that loaded the whole worker side
(task bodies, the CRM adapter, the pops) into every web process. Celery routes a task by
its name (``celery_app``'s ``task_routes``), so publishing by name reaches the same queue.
``worker/tasks/celery_tasks.py`` registers its tasks under these same constants, so the two cannot
drift apart.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time

from worker.tasks.celery_app import app
from worker.tasks.pipeline import mark_enqueued

log = logging.getLogger("callhook.webhook")

PROCESS_EVENT = "callhook.process_event"
LOG_CALL = "callhook.log_call"


def enqueue_event(event_id: int) -> bool:
    """Publish after commit; False (and a log line) when the broker is down: the sweep retries."""
    try:
        app.send_task(PROCESS_EVENT, (event_id,), retry=False)
    except Exception as exc:  # kombu raises many types for a dead broker
        log.warning("webhook.enqueue_failed event=%s error=%s", event_id, type(exc).__name__)
        return False
    mark_enqueued([event_id])
    return True


def enqueue_log_call(call_id: int) -> None:
    """Ask the worker to sync `call_id` now; raises what the broker raises when it is down."""
    app.send_task(LOG_CALL, (call_id,), retry=False)


class BackgroundPublisher:
    """Publishes stored deliveries' tasks off the webhook's hot path.

    A delivery is acknowledged once its row is committed (the only durable write it
    needs); publishing its task and recording that it was published (`enqueued_at`) are
    bookkeeping, done here by one thread per process, in batches: under load, one
    `UPDATE … WHERE id IN (…)` marks many at once. Nothing is lost if this thread never
    gets to an id (broker down, process killed): the row stays un-enqueued and the
    outbox sweep (`tasks.sweep_outbox`) publishes it after OUTBOX_GRACE_S.
    """

    MAX_BATCH = 500
    EXIT_BUDGET_S = 2.0

    def __init__(self) -> None:
        self._ids: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid: int | None = None

    def submit(self, event_id: int) -> None:
        self._ensure_thread()
        self._ids.put(event_id)

    def _ensure_thread(self) -> None:
        # A forked worker (gunicorn) inherits the object but not the thread: one per pid.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._ids = queue.SimpleQueue()
                threading.Thread(target=self._run, name="callhook-publisher", daemon=True).start()
                atexit.register(self.flush, self.EXIT_BUDGET_S)
                self._pid = os.getpid()

    def _take_batch(self, block: bool) -> list[int]:
        try:
            batch = [self._ids.get(block=block)]
        except queue.Empty:
            return []
        while len(batch) < self.MAX_BATCH:
            try:
                batch.append(self._ids.get_nowait())
            except queue.Empty:
                break
        return batch

    def _publish(self, batch: list[int]) -> None:
        published: list[int] = []
        for event_id in batch:
            try:
                app.send_task(PROCESS_EVENT, (event_id,), retry=False)
            except Exception as exc:  # a dead broker: the sweep publishes the rest later
                log.warning(
                    "webhook.enqueue_failed event=%s error=%s pending=%d",
                    event_id, type(exc).__name__, len(batch) - len(published),
                )  # fmt: skip
                break
            published.append(event_id)
        try:
            mark_enqueued(published)
        except Exception as exc:  # the sweep may publish them twice: process_event is idempotent
            log.warning("webhook.mark_enqueued_failed count=%d error=%s", len(published), exc)

    def _run(self) -> None:
        while True:
            batch = self._take_batch(block=True)
            if batch:
                self._publish(batch)

    def flush(self, budget_s: float) -> None:
        """Publish what is still waiting, within `budget_s` (at exit; tests)."""
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            batch = self._take_batch(block=False)
            if not batch:
                return
            self._publish(batch)


PUBLISHER = BackgroundPublisher()


def enqueue_event_soon(event_id: int) -> None:
    """Hand a committed delivery's task to this process's publisher (returns at once)."""
    PUBLISHER.submit(event_id)
