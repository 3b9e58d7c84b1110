"""Group commit: deliveries arriving together share one INSERT and one COMMIT.

A webhook is answered 2xx only once its row is durably committed; that commit (a round
trip and a WAL flush) is most of what a delivery costs. Under load many threads of a web
process wait on their own commit at once. Here they queue instead: the first thread to
find no write in flight becomes the *leader* and writes every queued row (up to
`MAX_BATCH`) in one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` and one
``COMMIT``; the others wait, then each answers for its own row. When the leader is done
it hands the lead to the first thread still waiting, so no thread keeps writing other
threads' rows while its own answer waits. A lone delivery finds no write in flight and
goes straight to the database: at a trickle nothing waits. Durability per delivery is
unchanged: each waiter returns only after the commit that holds its row.

Why written here: SQLAlchemy and the drivers commit per connection; batching commits
across requests (PostgreSQL's own `commit_delay` works only across sessions that commit
at the same instant, and only with fsync on) is the application's to do. The mechanism is
the classic leader/follower group commit; it is small and has no thread of its own, so it
survives gunicorn's fork without care.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Row = TypeVar("Row")
Result = TypeVar("Result")

# One statement's worth: past this the statement grows without cutting round trips much.
MAX_BATCH = 200


@dataclass
class _Waiter(Generic[Row, Result]):
    row: Row
    done: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    result: Result | None = None
    error: BaseException | None = None


class GroupCommit(Generic[Row, Result]):
    """Writes rows in batches with `write_batch`, one result per row, in the rows' order.

    `write_batch(rows)` must return one result per row (same order) or raise; a raise is
    every row's error, so `write_batch` decides itself which failures to split up.
    """

    def __init__(self, write_batch: Callable[[Sequence[Row]], list[Result]]) -> None:
        self._write_batch = write_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter[Row, Result]] = []
        self._writing = False

    def write(self, row: Row) -> Result:
        waiter: _Waiter[Row, Result] = _Waiter(row)
        with self._lock:
            self._queue.append(waiter)
            waiter.leads = not self._writing
            self._writing = True
        if not waiter.leads:
            waiter.done.wait()
        if waiter.leads:
            self._lead()
        if waiter.error is not None:
            raise waiter.error
        return waiter.result  # type: ignore[return-value]  # set with `done` when no error

    def _lead(self) -> None:
        """Write one batch (this thread's row among them), then pass the lead on."""
        with self._lock:
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
        try:
            results = self._write_batch([w.row for w in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} rows")
            for waiter, result in zip(batch, results, strict=True):
                waiter.result = result
        except BaseException as exc:  # every row of the batch shares the failure
            for waiter in batch:
                waiter.error = exc
        finally:
            with self._lock:
                if self._queue:
                    nxt = self._queue[0]
                    nxt.leads = True
                    nxt.done.set()
                else:
                    self._writing = False
            for waiter in batch:
                waiter.leads = False
                waiter.done.set()
