"""One request budget for HubSpot, shared by every worker process through Redis.

HubSpot counts a private app's requests per rolling 10 s (100 by default, more on
higher tiers) and its search endpoints per second (5). Retrying after a 429 works,
but each 429 is a wasted request and a delayed call; so every request first takes
a slot here. The window is a sorted set of request times, checked and filled by one
Lua script (atomic across processes), with Redis's own clock so workers on several
machines agree.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import redis

log = logging.getLogger("callhook.crm")

# KEYS: the windows; ARGV: a unique member, then limit and window (ms) per key.
# All or nothing: a slot is taken in every window at once, or in none, so a request never
# holds one slot while it waits for another (its recorded time would drift from the time
# HubSpot counts it). Returns 0 when taken, else the milliseconds to wait.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now, 1)
  end
end
if wait > 0 then
  return wait
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2 * i + 1]))
end
return 0
"""


@dataclass(frozen=True)
class Budget:
    limit: int
    window_s: float


class RateLimiter:
    """`take(kind)` blocks until a request of that kind may go, or says how long to wait."""

    def __init__(self, client: redis.Redis, budgets: dict[str, Budget], max_wait_s: float = 10.0):
        self.client = client
        self.budgets = budgets
        self.max_wait_s = max_wait_s
        self._script = client.register_script(_TAKE)

    def take(self, kinds: tuple[str, ...]) -> float | None:
        """Take one slot in each budget at once; None when taken, else seconds the caller
        should come back after (the wait would exceed `max_wait_s`: better retry the task
        later than hold a worker). A Redis outage lets the request go: HubSpot's 429
        remains."""
        deadline = time.monotonic() + self.max_wait_s
        keys = [f"callhook:ratelimit:{kind}" for kind in kinds]
        limits: list[int] = []
        for kind in kinds:
            budget = self.budgets[kind]
            limits += [budget.limit, int(budget.window_s * 1000)]
        while True:
            try:
                wait_ms = self._script(keys=keys, args=[uuid.uuid4().hex, *limits])
            except redis.RedisError as exc:
                log.warning("ratelimit.unavailable error=%s", type(exc).__name__)
                return None
            if not wait_ms:
                return None
            wait = int(wait_ms) / 1000
            if time.monotonic() + wait > deadline:
                return wait
            time.sleep(wait)
