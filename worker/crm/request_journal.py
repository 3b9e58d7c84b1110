"""The HubSpot requests of one sync attempt, kept with the attempt for the operator.

A call's story page must answer "why is this call not in HubSpot?" by itself: which
requests went out (a search, a create, an association), what each answered and how long
it took. The transport notes each request here while a sync is being recorded
(`recording()`, entered by `call_logging.sync_call`); outside one (screen-pops, the
CLI) nothing is kept. A context variable, not a parameter threaded through the adapter:
the adapter's methods stay about HubSpot, and a Celery task runs one sync at a time.

A flush syncs many calls in one block: the batch code says which calls the requests it
sends concern (`about`), and each call's attempt keeps those, plus the requests that
concerned every call of the flush (`entries_for`); a shared request says how many calls
it served (`calls`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# A sync sends a handful of requests; a bound keeps a runaway loop from bloating the row
# (a flush's journal holds every call's requests: bounded per call, and in all).
MAX_ENTRIES = 50
MAX_FLUSH_ENTRIES = 2000
MAX_ERROR_CHARS = 500


class _Journal:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.entries: list[dict[str, Any]] = []


_current: ContextVar[_Journal | None] = ContextVar("crm_journal", default=None)
_about: ContextVar[frozenset[int] | None] = ContextVar("crm_journal_about", default=None)


@contextmanager
def recording() -> Iterator[None]:
    """Collect the requests sent inside the block (read with `entries`, `elapsed_ms`)."""
    token = _current.set(_Journal())
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def about(call_ids: set[int] | frozenset[int]) -> Iterator[None]:
    """The requests sent inside the block concern these calls only (a flush's batches)."""
    token = _about.set(frozenset(call_ids))
    try:
        yield
    finally:
        _about.reset(token)


def entries() -> list[dict[str, Any]] | None:
    """The requests recorded so far in this block (None outside one)."""
    journal = _current.get()
    if journal is None:
        return None
    return [_public(e) for e in journal.entries][:MAX_ENTRIES]


def entries_for(call_id: int) -> list[dict[str, Any]] | None:
    """The requests recorded so far that concerned this call (None outside a block)."""
    journal = _current.get()
    if journal is None:
        return None
    mine = [e for e in journal.entries if e["_about"] is None or call_id in e["_about"]]
    return [_public(e) for e in mine][:MAX_ENTRIES]


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in entry.items() if k != "_about"}
    if entry["_about"] is not None and len(entry["_about"]) > 1:
        shown["calls"] = len(entry["_about"])
    return shown


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
    if journal is None or len(journal.entries) >= MAX_FLUSH_ENTRIES:
        return
    method, _, path = request.partition(" ")
    journal.entries.append(
        {
            "method": method,
            "path": path,
            "status": status,
            "ms": round(ms, 1),
            "error": error[:MAX_ERROR_CHARS] if error else None,
            "_about": _about.get(),
        }
    )
