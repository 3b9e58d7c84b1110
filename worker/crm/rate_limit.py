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

# KEYS[1] the window; ARGV: limit, window in ms, a unique member.
# Returns 0 when a slot was taken, else the milliseconds to wait before asking again.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
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
        """Take one slot in each budget; None when taken, else seconds the caller should
        come back after (the wait would exceed `max_wait_s`: better retry the task later
        than hold a worker). A Redis outage lets the request go: HubSpot's 429 remains."""
        deadline = time.monotonic() + self.max_wait_s
        for kind in kinds:
            budget = self.budgets[kind]
            while True:
                try:
                    wait_ms = self._script(
                        keys=[f"callhook:ratelimit:{kind}"],
                        args=[budget.limit, int(budget.window_s * 1000), uuid.uuid4().hex],
                    )
                except redis.RedisError as exc:
                    log.warning("ratelimit.unavailable error=%s", type(exc).__name__)
                    return None
                if not wait_ms:
                    break
                wait = int(wait_ms) / 1000
                if time.monotonic() + wait > deadline:
                    return wait
                time.sleep(wait)
        return None
