"""Publishing tasks by name: what the web process needs of Celery, without the tasks.

The receiver, the replay and the agent page only *publish* (`enqueue_event`,
`enqueue_log_call`); importing ``worker.tasks`` for that loaded the whole worker side
(task bodies, the CRM adapter, the pops) into every web process. Celery routes a task by
its name (``celery_app``'s ``task_routes``), so publishing by name reaches the same queue.
``worker/tasks.py`` registers its tasks under these same constants, so the two cannot
drift apart.
"""

from __future__ import annotations

import logging

from worker.celery_app import app
from worker.pipeline import mark_enqueued

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
