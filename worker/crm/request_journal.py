"""The HubSpot requests of one sync attempt, kept with the attempt for the operator.

A call's story page must answer "why is this call not in HubSpot?" by itself: which
requests went out (a search, a create, an association), what each answered and how long
it took. The transport notes each request here while a sync is being recorded
(`recording()`, entered by `call_logging.sync_call`); outside one (screen-pops, the
CLI) nothing is kept. A context variable, not a parameter threaded through the adapter:
the adapter's methods stay about HubSpot, and a Celery task runs one sync at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# A sync sends a handful of requests; a bound keeps a runaway loop from bloating the row.
MAX_ENTRIES = 50
MAX_ERROR_CHARS = 500


class _Journal:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.entries: list[dict[str, Any]] = []


_current: ContextVar[_Journal | None] = ContextVar("crm_journal", default=None)


@contextmanager
def recording() -> Iterator[None]:
    """Collect the requests sent inside the block (read with `entries`, `elapsed_ms`)."""
    token = _current.set(_Journal())
    try:
        yield
    finally:
        _current.reset(token)


def entries() -> list[dict[str, Any]] | None:
    """The requests recorded so far in this block (None outside one)."""
    journal = _current.get()
    return None if journal is None else list(journal.entries)


def elapsed_ms() -> int | None:
    """Milliseconds since the block began (None outside one)."""
    journal = _current.get()
    return None if journal is None else round((time.perf_counter() - journal.started) * 1000)


def note(request: str, status: int | None, ms: float, error: str | None = None) -> None:
    """Record one answered (or failed) request, if a sync is being recorded.

    `request` is "METHOD /path" with ids left as placeholders: the story page shows what
    kind of request it was; the record ids are on the attempt itself.
    """
    journal = _current.get()
    if journal is None or len(journal.entries) >= MAX_ENTRIES:
        return
    method, _, path = request.partition(" ")
    journal.entries.append(
        {
            "method": method,
            "path": path,
            "status": status,
            "ms": round(ms, 1),
            "error": error[:MAX_ERROR_CHARS] if error else None,
        }
    )
