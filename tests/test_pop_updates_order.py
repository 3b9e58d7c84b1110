"""A card's updates may land out of order; the card never goes back.

Each update is pushed after its fold commits, by whichever worker folded it, so an update
that read the call before it ended (the pop's own catch-up after its CRM lookup, or the
answer's update) can reach Redis after the end's. The agent must still see the call ended,
or it stays "On the call" with no wrap-up form.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from tests.conftest import ROOT, RedisServer
from worker.core.models import Call
from worker.crm.mapping_files import load_mapping_files
from worker.tasks import pops

ALICE = "alice@example.com"  # kavkom extension 1001 in mappings/agents.yaml


def _card(client: redis.Redis, call_id: int) -> dict[str, Any]:
    import json

    body = client.hget(pops.pops_key(call_id), ALICE)
    assert body is not None
    return dict(json.loads(body))


def _call(call_id: int, *, answered: bool, ended: bool) -> Call:
    now = datetime.now(UTC)
    return Call(id=call_id, platform="kavkom", platform_call_id=f"order-{call_id}",
                agent="1001", answered_at=now if answered else None, ended=ended)  # fmt: skip


def test_an_update_read_before_the_end_does_not_reopen_an_ended_card(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    agents = load_mapping_files(ROOT / "mappings").agents
    call_id = 990_001
    client.delete(pops.pops_key(call_id), pops.stream_key(ALICE))
    ringing = {"call_key": f"kavkom:order-{call_id}", "state": "ringing", "answered": False}
    pops.publish(client, call_id, ALICE, ringing, ttl_s=60)

    # In order: answered, then ended.
    assert pops.push_update(client, _call(call_id, answered=True, ended=False), agents, 60) == 1
    assert _card(client, call_id)["state"] == "answered"
    assert pops.push_update(client, _call(call_id, answered=True, ended=True), agents, 60) == 1
    assert _card(client, call_id)["state"] == "ended"
    published = client.xlen(pops.stream_key(ALICE))

    # Late: an update that read the call while it was still on, and one from the ringing.
    assert pops.push_update(client, _call(call_id, answered=True, ended=False), agents, 60) == 0
    assert pops.push_update(client, _call(call_id, answered=False, ended=False), agents, 60) == 0
    card = _card(client, call_id)
    assert (card["state"], card["answered"]) == ("ended", True)
    assert client.xlen(pops.stream_key(ALICE)) == published  # nothing sent to the page
