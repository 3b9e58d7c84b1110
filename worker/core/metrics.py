"""Prometheus metrics, counted in Redis so that every process adds to the same numbers.

Why Redis and not prometheus_client's multiprocess mode: that mode has each process write
memory-mapped files into one ``PROMETHEUS_MULTIPROC_DIR`` and the scraped process read
them all, which works only for processes sharing a filesystem. On Heroku (the Procfile's
layout) the web and the worker are separate dynos, so the worker's counters (folds, CRM
syncs, HubSpot requests, pops) would never reach the web's ``/metrics``; on one machine it
would also need the directory created and emptied before any process imports
prometheus_client, in gunicorn's master and Celery's parent alike. Every callhook
process already talks to one Redis (broker, pops, rate limits), so the counts live there:

- a counter is a Redis hash, one field per label combination (``HINCRBYFLOAT``);
- a histogram is a hash with one field per (labels, bucket) and one per (labels, sum);
  an observation increments its own bucket only, and the scrape makes them cumulative.

Gunicorn workers, Celery's prefork children, the listener and ``heroku run`` all add to
the same hashes with no start-up step, no directory, and nothing to clean; counts survive
a restart, which Prometheus handles as it handles any counter. ``/metrics`` reads them with
one pipelined round trip and exposes them through prometheus_client's metric families
(``RedisCollector``), so the exposition format is the library's, not ours.

Recording is best effort: a webhook must never wait for, or fail because of, a metric.
Each process sums its increments in memory and sends them every ``FLUSH_INTERVAL_S``
(and at exit, and before it serves a scrape): the hot path pays no Redis round trip, and
a process killed outright loses at most that last half second of counts.
A process that has no Redis yet (a unit test, a CLI command) counts nothing rather than
start the embedded server. Writes use short timeouts, and after a Redis error this
process stops writing for `QUIET_AFTER_ERROR_S` (one warning), instead of paying a
timeout on every request.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from worker.core.redis_conn import redis_url
from worker.core.settings import get_settings

log = logging.getLogger("callhook.metrics")

KEY_PREFIX = "callhook:metrics:"
# The Celery queues (worker/tasks/celery_app.py); their depth is read at scrape time.
QUEUES = ("callhook", "pops", "crm")
# Kombu's Redis transport keeps a message sent with a priority in `<queue>\x06\x16<step>`.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
WRITE_TIMEOUT_S = 0.25
QUIET_AFTER_ERROR_S = 30.0

_quiet_until = 0.0
_quiet_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # redis-py's pool notices a fork and opens new connections in the child.
    return redis.Redis.from_url(
        url, socket_timeout=WRITE_TIMEOUT_S, socket_connect_timeout=WRITE_TIMEOUT_S
    )


def _known_redis_url() -> str:
    """The Redis this process already uses, or "" (a metric never starts a Redis server).

    ``REDIS_URL``, or the embedded server's address, which `redis_conn.redis_url` puts in
    the environment once it has started it (and `callhook serve` hands to its children).
    """
    return get_settings().redis_url or os.environ.get("REDIS_URL", "")


# Increments wait here, summed per (command, key, field), and go to Redis every
# FLUSH_INTERVAL_S from a thread of this process (and at exit, and before this process
# serves a scrape): a webhook pays a dict update, not a Redis round trip.
FLUSH_INTERVAL_S = 0.5
_pending: dict[tuple[str, str, str], float] = {}
_pending_lock = threading.Lock()
_flusher_pid: int | None = None


def _write(commands: Sequence[tuple[str, str, str, float]]) -> None:
    """Add increments to this process's next flush."""
    if time.monotonic() < _quiet_until:
        return
    with _pending_lock:
        for command, key, field, amount in commands:
            slot = (command, key, field)
            _pending[slot] = _pending.get(slot, 0.0) + amount
    _ensure_flusher()


def _ensure_flusher() -> None:
    global _flusher_pid
    if _flusher_pid == os.getpid():
        return
    with _pending_lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()
    threading.Thread(target=_flush_forever, name="callhook-metrics", daemon=True).start()
    atexit.register(flush)


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL_S)
        flush()


def flush() -> None:
    """Send what this process counted since the last flush, in one round trip; drop it
    if Redis does not answer (a metric never holds anything up)."""
    with _pending_lock:
        if not _pending:
            return
        batch = list(_pending.items())
        _pending.clear()
    _send(batch)


def _send(batch: Sequence[tuple[tuple[str, str, str], float]]) -> None:
    global _quiet_until
    if time.monotonic() < _quiet_until:
        return
    url = _known_redis_url()
    if not url:
        return
    try:
        pipe = _client(url).pipeline(transaction=False)
        for (command, key, field), amount in batch:
            getattr(pipe, command)(key, field, amount)
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        with _quiet_lock:
            if time.monotonic() >= _quiet_until:
                log.warning(
                    "metrics.unavailable error=%s: not counting for %.0f s",
                    type(exc).__name__,
                    QUIET_AFTER_ERROR_S,
                )
            _quiet_until = time.monotonic() + QUIET_AFTER_ERROR_S


def _field(values: Sequence[str]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


@dataclass(frozen=True)
class Counter:
    """A counter shared by every process (its hash is ``callhook:metrics:<name>``)."""

    name: str
    documentation: str
    labelnames: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        values = [str(labels[n]) for n in self.labelnames]
        _write([("hincrbyfloat", self.key, _field(values), amount)])

    def family(self, raw: dict[bytes, bytes]) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for field, value in sorted(raw.items()):
            family.add_metric(json.loads(field), float(value))
        return family


@dataclass(frozen=True)
class Histogram:
    """A histogram shared by every process; buckets are upper bounds in seconds."""

    name: str
    documentation: str
    labelnames: tuple[str, ...]
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    def observe(self, value: float, **labels: object) -> None:
        values = [str(labels[n]) for n in self.labelnames]
        bound = next((b for b in self.buckets if value <= b), math.inf)
        _write(
            [
                ("hincrbyfloat", self.key, _field([*values, "bucket", repr(bound)]), 1),
                ("hincrbyfloat", self.key, _field([*values, "sum"]), value),
            ]
        )

    def observe_since(self, start: datetime | float | None, **labels: object) -> None:
        """Observe the seconds from `start` (an aware datetime or epoch seconds) to now.

        Times come from other processes and machines (and, for a call's end, from the
        platform's clock): a start in the future counts as zero rather than not at all.
        """
        if start is None:
            return
        if isinstance(start, datetime):
            aware = start if start.tzinfo else start.replace(tzinfo=UTC)
            start = aware.timestamp()
        self.observe(max(0.0, time.time() - start), **labels)

    def family(self, raw: dict[bytes, bytes]) -> Metric:
        n = len(self.labelnames)
        counts: dict[tuple[str, ...], dict[float, float]] = {}
        sums: dict[tuple[str, ...], float] = {}
        for field, value in raw.items():
            parts = json.loads(field)
            labels, kind = tuple(parts[:n]), parts[n]
            if kind == "sum":
                sums[labels] = float(value)
            else:
                counts.setdefault(labels, {})[float(parts[n + 1])] = float(value)
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels in sorted(set(counts) | set(sums)):
            seen, cumulative = counts.get(labels, {}), 0.0
            buckets = []
            for bound in (*self.buckets, math.inf):
                cumulative += seen.get(bound, 0.0)
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            family.add_metric(list(labels), buckets, sum_value=sums.get(labels, 0.0))
        return family


_LATENCY_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

WEBHOOK_DELIVERIES = Counter(
    "callhook_webhook_deliveries",
    "Webhook (and listener) deliveries by platform, what became of them, and the HTTP "
    "status answered. result: accepted, duplicate, ignored, unmapped (kept for replay, "
    "whatever the answer), refused (not stored).",
    ("platform", "result", "status"),
)
FOLD_LATENCY = Histogram(
    "callhook_fold_latency_seconds",
    "From a delivery's arrival (received_at) to its events folded into their calls.",
    ("platform",),
    _LATENCY_S,
)
CRM_SYNC_LATENCY = Histogram(
    "callhook_crm_sync_latency_seconds",
    "From a call's end (the platform's time) to its CRM record written, by create/update.",
    ("action",),
    (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
CRM_SYNCS = Counter(
    "callhook_crm_syncs",
    "CRM sync tasks by their call's outcome: synced, unchanged, not_ended, busy, held "
    "(waiting for its batch under load), retry, failed.",
    ("state",),
)
CRM_FLUSH_SIZE = Histogram(
    "callhook_crm_flush_calls",
    "Calls written to the CRM together by one flush (1 at a trickle, up to 100 under load).",
    (),
    (1, 2, 5, 10, 20, 50, 100),
)
HUBSPOT_REQUESTS = Counter(
    "callhook_hubspot_requests",
    "Requests sent to HubSpot by the answer's status: the code for a refusal (429 "
    "included), 2xx for a success, error when no answer came back (timeout, network).",
    ("status",),
)
POPS_SENT = Counter("callhook_pops_sent", "Screen-pop cards appended to an agent's stream.")
POP_LATENCY = Histogram(
    "callhook_pop_latency_seconds",
    "From the ringing delivery's arrival to its card appended to the agent's stream.",
    (),
    (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0),
)
METRICS: tuple[Counter | Histogram, ...] = (
    WEBHOOK_DELIVERIES,
    FOLD_LATENCY,
    CRM_SYNC_LATENCY,
    CRM_SYNCS,
    CRM_FLUSH_SIZE,
    HUBSPOT_REQUESTS,
    POPS_SENT,
    POP_LATENCY,
)


class RedisCollector(Collector):
    """Reads the shared counts and the Celery queues' lengths when Prometheus scrapes."""

    def __init__(self, client: redis.Redis | None = None) -> None:
        self._given = client

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "callhook_metrics_store_up", "1 if the metrics in Redis could be read."
        )
        client = self._given or redis.Redis.from_url(
            redis_url(), socket_timeout=2, socket_connect_timeout=2
        )
        try:
            pipe = client.pipeline(transaction=False)
            for metric in METRICS:
                pipe.hgetall(metric.key)
            for queue in QUEUES:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            answers = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics.scrape_failed error=%s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for metric, raw in zip(METRICS, answers, strict=False):
            yield metric.family(raw)
        depth = GaugeMetricFamily(
            "callhook_queue_depth",
            "Tasks waiting in each Celery queue (Redis LLEN at scrape time).",
            labels=["queue"],
        )
        lengths = answers[len(METRICS) :]
        step = len(_PRIORITY_SUFFIXES)
        for i, queue in enumerate(QUEUES):
            depth.add_metric([queue], sum(lengths[i * step : (i + 1) * step]))
        yield depth
