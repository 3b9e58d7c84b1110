"""One request budget for HubSpot, shared by every worker process through Redis.

HubSpot counts a private app's requests per rolling 10 s (100 by default, more on
higher tiers) and its search endpoints per second (5). Retrying after a 429 works,
but each 429 is a wasted request and a delayed call; so every request first takes
a slot here (worker/core/sliding_window.py: sorted sets of request times, one atomic Lua
script, Redis's own clock so workers on several machines agree).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from worker.core.settings import Settings
from worker.core.sliding_window import Window, take

log = logging.getLogger("callhook.crm")


@dataclass(frozen=True)
class Budget:
    limit: int
    window_s: float


def window_key(kind: str) -> str:
    """The Redis sorted set of a budget's recent slots (one score per request taken)."""
    return f"callhook:ratelimit:{kind}"


def hubspot_budgets(settings: Settings) -> dict[str, Budget]:
    """HubSpot's budgets as callhook keeps them: the limiter's, and what the health page reads.

    Margins on each window: a slot is timed when taken, HubSpot counts the request when it
    arrives, and the two drift by the request's own latency (tens of ms, more under load),
    which matters most on the one-second search window.
    """
    return {
        "requests": Budget(settings.hubspot_requests_per_10s, 10.5),
        "search": Budget(settings.hubspot_searches_per_s, 1.1),
    }


class RateLimiter:
    """`take(kind)` blocks until a request of that kind may go, or says how long to wait."""

    def __init__(self, client: redis.Redis, budgets: dict[str, Budget], max_wait_s: float = 10.0):
        self.client = client
        self.budgets = budgets
        self.max_wait_s = max_wait_s

    def take(self, kinds: tuple[str, ...]) -> float | None:
        """Take one slot in each budget at once; None when taken, else seconds the caller
        should come back after (the wait would exceed `max_wait_s`: better retry the task
        later than hold a worker). A Redis outage lets the request go: HubSpot's 429
        remains."""
        deadline = time.monotonic() + self.max_wait_s
        windows = [
            Window(window_key(kind), self.budgets[kind].limit, self.budgets[kind].window_s)
            for kind in kinds
        ]
        while True:
            try:
                full = take(self.client, windows)
            except redis.RedisError as exc:
                log.warning("ratelimit.unavailable error=%s", type(exc).__name__)
                return None
            if full is None:
                return None
            if time.monotonic() + full.wait_s > deadline:
                return full.wait_s
            time.sleep(full.wait_s)
