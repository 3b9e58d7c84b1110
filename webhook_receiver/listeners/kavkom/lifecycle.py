"""The one stop signal every task of the listener waits on, and how tasks are wound up.

The listener runs several tasks at once (the token, one connection per extension, the
store); each must notice a stop at once, even in the middle of a long backoff, so every
wait goes through `Lifecycle.pause`. A task's failure while winding up is logged by its
type only, never with a message that could quote a token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from webhook_receiver.listeners.kavkom.logs import log


class Lifecycle:
    """Created inside the running event loop: set once, by a stop or a signal."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()

    @property
    def stopped(self) -> bool:
        return self.stopping.is_set()

    def begin_stop(self, signame: str | None) -> None:
        if not self.stopping.is_set():
            log.info("listener.kavkom.stopping%s", f" signal={signame}" if signame else "")
            self.stopping.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep, waking early on stop; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=max(0.0, seconds))
        return self.stopping.is_set()


async def settle(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel what is still running and wait for all of it, logging any task's failure."""
    tasks = list(tasks)
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("listener.kavkom.task_failed error=%s", type(result).__name__)
