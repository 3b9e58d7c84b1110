"""Sliding-window rate limits in Redis, shared by every process: one Lua script.

Each window is a sorted set of the times its slots were taken; one script drops the old
entries, counts, and takes a slot in every window at once or in none (a caller never
holds one window's slot while it waits for another's). Redis's own clock is the time,
so processes on several machines agree. Unlike a fixed window (INCR + EXPIRE per clock
minute), it never lets twice the limit through across a window's boundary, and it says
exactly when the oldest entry leaves (the wait). Used by the HubSpot request budget
(worker/crm/rate_limit.py) and the click-to-call limits (worker/telephony/dialing.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis

# KEYS: the windows; ARGV: a unique member, then limit and window (ms) per key.
# Returns {0, 0} when a slot was taken in every window, else {ms to wait, the index (from
# 1) of the window that makes the longest wait}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait, which = 0, 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local this = math.max(tonumber(oldest[2]) + window - now, 1)
    if this > wait then wait, which = this, i end
  end
end
if wait > 0 then
  return {wait, which}
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2 * i + 1]))
end
return {0, 0}
"""


@dataclass(frozen=True)
class Window:
    """At most `limit` slots in any `window_s` seconds, counted under `key`."""

    key: str
    limit: int
    window_s: float


@dataclass(frozen=True)
class Full:
    """No slot was taken: the caller may come back after `wait_s`; `window` is the one
    whose limit was reached (the longest wait)."""

    wait_s: float
    window: Window


def take(client: redis.Redis, windows: list[Window]) -> Full | None:
    """Take one slot in every window at once; None when taken. RedisError propagates:
    whether to let the request go without a count is the caller's choice."""
    args: list[str | int] = [uuid.uuid4().hex]
    for window in windows:
        args += [window.limit, int(window.window_s * 1000)]
    wait_ms, which = client.register_script(_TAKE)(keys=[w.key for w in windows], args=args)
    if not int(wait_ms):
        return None
    return Full(int(wait_ms) / 1000, windows[int(which) - 1])
