"""Contact lookups remembered in Redis, shared by every process.

The screen-pop must answer while the phone rings, and the same caller's call is
logged a minute later: one HubSpot search serves both. Hits and misses expire
separately (a new contact must be found soon after it is created), and a Redis
outage only costs the cache, never the lookup.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import redis

from worker.crm.base import Contact

log = logging.getLogger("callhook.crm")
PREFIX = "callhook:contact:"


class RedisContactCache:
    def __init__(self, client: redis.Redis, hit_s: float, miss_s: float):
        self.client = client
        self.hit_s = hit_s
        self.miss_s = miss_s

    def get(self, e164: str) -> tuple[bool, list[Contact]]:
        """(known, contacts): known is False when the cache has nothing to say."""
        try:
            raw = self.client.get(PREFIX + e164)
        except redis.RedisError as exc:
            log.warning("cache.unavailable error=%s", type(exc).__name__)
            return False, []
        if raw is None:
            return False, []
        data = json.loads(raw)
        if not isinstance(data, list):  # written by an older callhook: ask HubSpot again
            return False, []
        return True, [Contact(**item) for item in data]

    def put(self, e164: str, contacts: list[Contact]) -> None:
        ttl = self.hit_s if contacts else self.miss_s
        if ttl <= 0:
            return
        value = json.dumps([asdict(c) for c in contacts])
        try:
            self.client.set(PREFIX + e164, value, px=int(ttl * 1000))
        except redis.RedisError as exc:
            log.warning("cache.unavailable error=%s", type(exc).__name__)

    def forget(self, e164: str) -> None:
        try:
            self.client.delete(PREFIX + e164)
        except redis.RedisError as exc:
            log.warning("cache.unavailable error=%s", type(exc).__name__)
