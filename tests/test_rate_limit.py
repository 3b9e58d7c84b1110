"""HubSpot's limits are kept by every worker together, not discovered through 429s."""

from __future__ import annotations

import json
from typing import Any

import redis

from tests.conftest import KAVKOM_SECRET, RedisServer, load_fixture, wait_until
from worker.crm.rate_limit import Budget, RateLimiter


def test_a_budget_grants_its_limit_then_says_how_long_to_wait(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.delete("callhook:ratelimit:demo")
    limiters = [  # two "processes" sharing one budget through Redis
        RateLimiter(client, {"demo": Budget(5, 60.0)}, max_wait_s=0) for _ in range(2)
    ]
    answers = [limiters[i % 2].take(("demo",)) for i in range(8)]
    assert answers[:5] == [None] * 5
    assert all(wait is not None and 0 < wait <= 60 for wait in answers[5:])


def test_a_burst_of_calls_never_meets_a_429(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    # 40 calls ended at once: 40 searches at HubSpot's 5/s would be refused without the
    # shared budget (the fake HubSpot enforces it); with it, every call is logged cleanly.
    seed = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    numbers = [f"336123457{i:02d}" for i in range(40)]
    for i, number in enumerate(numbers):
        body: dict[str, Any] = {**seed, "callUuid": f"burst-{i}", "number": number}
        response = client.post("/webhooks/kavkom", json=body,
                               headers={"Authorization": f"Bearer {KAVKOM_SECRET}"})  # fmt: skip
        assert response.status_code == 200
    wait_until(lambda: {"+" + n for n in numbers} <= {
        c["properties"].get("hs_call_to_number") for c in hubspot.calls()
    }, timeout=90)  # fmt: skip
    assert [r for r in hubspot.requests() if r["status"] == 429] == []
    wanted = {"+" + n for n in numbers}
    assert (
        len([c for c in hubspot.calls() if c["properties"].get("hs_call_to_number") in wanted])
        == 40
    )


def test_a_request_takes_all_its_slots_at_once_or_none(redis_server: RedisServer) -> None:
    # A search needs a per-second slot and a 10-second slot: if one is full it must not
    # hold the other while it waits (its recorded time would drift from HubSpot's count).
    client = redis.Redis.from_url(redis_server.url)
    client.delete("callhook:ratelimit:wide", "callhook:ratelimit:narrow")
    limiter = RateLimiter(
        client, {"wide": Budget(10, 60.0), "narrow": Budget(1, 60.0)}, max_wait_s=0
    )
    assert limiter.take(("narrow", "wide")) is None
    assert limiter.take(("narrow", "wide")) is not None  # narrow is full...
    assert client.zcard("callhook:ratelimit:wide") == 1  # ...and wide was not charged
