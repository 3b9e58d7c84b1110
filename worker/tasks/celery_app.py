"""The Celery application, configured for at-least-once delivery.

Tasks are acknowledged after they finish (``acks_late``) and a worker takes one
at a time, so a killed worker's task goes back to the queue; the tasks are
idempotent, so running one twice is harmless.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from worker.core.redis_conn import celery_broker_url, redis_url
from worker.core.settings import get_settings

app = Celery("callhook", include=["worker.tasks.celery_tasks"])

# A task taken by a worker that then dies outright (SIGKILL, a lost machine: its
# acknowledgement never comes) goes back to the queue once the broker's visibility timeout
# has passed (`BROKER_VISIBILITY_TIMEOUT_S`, 5 minutes): how long a worker crash delays
# the calls it held (bench/scale_out.py kills one). Every task is safe to run twice
# (folds are order-free, the CRM sync holds a lease on the call row, a card is a whole
# snapshot), so a task that outlives the timeout only costs a second, harmless run.
MAX_RETRY_DELAY_S = 120.0


def max_retry_delay_s() -> float:
    """The longest retry countdown: 2 minutes, and well under the visibility timeout (a
    longer countdown would make Redis hand the waiting task to a second worker, again at
    each timeout)."""
    return min(MAX_RETRY_DELAY_S, 0.4 * get_settings().broker_visibility_timeout_s)


def configure() -> Celery:
    """Point the app at the broker; called by each process before it sends or runs tasks."""
    settings = get_settings()
    timeout = settings.broker_publish_timeout_s
    # Beat keeps its schedule in a file; under INSTANCE_DIR it never lands in the
    # checkout (the Procfile's `worker --beat` passes no --schedule). The worker's entry
    # point creates the folder (worker/tasks/celery_worker.py): web processes need none.
    app.conf.update(
        beat_schedule_filename=str(settings.instance_dir.resolve() / "celerybeat-schedule"),
        broker_url=celery_broker_url(redis_url()),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue="callhook",
        # Three queues so a slow or throttled CRM never delays folding events or a
        # screen-pop; a worker started without -Q consumes all three.
        task_queues=[Queue("callhook"), Queue("pops"), Queue("crm")],
        task_routes={
            "callhook.screen_pop": {"queue": "pops"},
            "callhook.log_call": {"queue": "crm"},
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=timeout,
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        },
        # The receiver must answer fast even when Redis is down: fail the publish
        # at once and leave the event to the outbox sweep.
        task_publish_retry=False,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-outbox": {
                "task": "callhook.sweep_outbox",
                "schedule": settings.outbox_sweep_interval_s,
            },
        },
    )
    return app
