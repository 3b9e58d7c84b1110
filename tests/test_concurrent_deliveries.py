"""Deliveries arriving together are each stored and answered for themselves.

Under load the receiver writes the rows of concurrent deliveries in one INSERT and one
COMMIT (webhook_receiver/deliveries/group_commit.py). What a platform must still see:
every new delivery answered "accepted" with its own id, every repeat (even one racing its
original) "duplicate" with the original's id, and every accepted row in the database.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlmodel import Session, col, select

from tests.conftest import KAVKOM_SECRET, load_fixture
from webhook_receiver.deliveries.intake import _write_rows
from worker.core.db import get_engine
from worker.core.models import WebhookEvent

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}", "Content-Type": "application/json"}


def cdr(call_id: str) -> str:
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload["callUuid"] = call_id
    return json.dumps(payload)


def test_concurrent_deliveries_and_racing_repeats_each_get_their_own_answer(live_server) -> None:  # type: ignore[no-untyped-def]
    # 60 calls, each delivered three times, all 180 posts at once from 30 connections.
    call_ids = [f"burst-{n}" for n in range(60)]
    posts = [call_id for call_id in call_ids for _ in range(3)]
    url = f"{live_server.url}/webhooks/kavkom"

    def post(call_id: str) -> tuple[str, int, dict]:
        answer = requests.post(url, data=cdr(call_id), headers=AUTH, timeout=30)
        return call_id, answer.status_code, answer.json()

    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(post, posts))

    assert {status for _, status, _ in answers} == {200}
    by_call: dict[str, list[dict]] = {}
    for call_id, _, body in answers:
        by_call.setdefault(call_id, []).append(body)
    for call_id, bodies in by_call.items():
        statuses = Counter(body["status"] for body in bodies)
        assert statuses == {"accepted": 1, "duplicate": 2}, (call_id, bodies)
        assert len({body["id"] for body in bodies}) == 1, (call_id, bodies)

    ids = {bodies[0]["id"] for bodies in by_call.values()}
    assert len(ids) == 60
    with Session(get_engine()) as session:
        rows = session.exec(select(WebhookEvent).where(col(WebhookEvent.id).in_(ids))).all()
    assert len(rows) == 60 and len({row.dedupe_key for row in rows}) == 60


def test_one_row_the_database_refuses_does_not_sink_its_batch(stack) -> None:  # type: ignore[no-untyped-def]
    from webhook_receiver.deliveries.intake import _row

    good = [_row("kavkom", b"{}", "POST", "application/json", "") for _ in range(3)]
    for n, row in enumerate(good):
        row.dedupe_key = f"batch-good-{n}"
    bad = _row("kavkom", b"{}", "POST", "application/json", "")
    bad.dedupe_key = "batch-bad"
    bad.status = None  # type: ignore[assignment]  # NOT NULL: the database refuses this row

    outcomes = _write_rows([good[0], bad, good[1], good[2]])

    assert isinstance(outcomes[1], Exception)
    stored = [outcome for n, outcome in enumerate(outcomes) if n != 1]
    assert all(isinstance(o, tuple) and o[1] is True for o in stored), outcomes
    with Session(get_engine()) as session:
        keys = session.exec(
            select(WebhookEvent.dedupe_key).where(col(WebhookEvent.dedupe_key).like("batch-%"))
        ).all()
    assert sorted(keys) == ["batch-good-0", "batch-good-1", "batch-good-2"]


def test_every_writer_gets_its_own_result_and_only_its_batch_shares_a_failure() -> None:
    import threading
    import time

    from webhook_receiver.deliveries.group_commit import GroupCommit

    batches: list[list[int]] = []

    def write(rows: list[int]) -> list[int]:
        batches.append(list(rows))
        time.sleep(0.002)  # a commit's round trip, so that writers pile up behind it
        if 13 in rows:
            raise ValueError("refused")
        return [row * 10 for row in rows]

    group: GroupCommit[int, int] = GroupCommit(write)
    results: dict[int, object] = {}

    def writer(n: int) -> None:
        try:
            results[n] = group.write(n)
        except ValueError as exc:
            results[n] = exc

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(300)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    assert any(len(batch) > 1 for batch in batches)  # they did share commits
    assert sorted(n for batch in batches for n in batch) == list(range(300))
    failed = next(batch for batch in batches if 13 in batch)
    for n in range(300):
        if n in failed:
            assert isinstance(results[n], ValueError)
        else:
            assert results[n] == n * 10
