"""Legs of one call fold into one logical call, whatever order their events arrive in.

A KAZOO inbound call is a customer leg plus one leg per agent device that rang; a Kwebbl
call is joined to its agent's leg by a `bridged` event that may come before or after the
legs' own events. Sales teams must see one call, with the agent who answered.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from tests.conftest import TEST_SECRET_KEY, Environment, fresh_database
from worker.core.db import get_engine, session_scope
from worker.core.events import CallEvent
from worker.core.fold import apply_event, fold_events, state_hash
from worker.core.models import Call, CrmStatus, WebhookEvent


def at(second: int) -> datetime:
    return datetime(2026, 3, 18, 12, 0, tzinfo=UTC) + timedelta(seconds=second)


def ev(call_id: str, stage: str, second: int, **fields: object) -> CallEvent:
    return CallEvent(platform="p", call_id=call_id, stage=stage, occurred_at=at(second), **fields)  # type: ignore[arg-type]


# A queue call: the customer's leg A rings two agents (legs B1, B2); B2 answers.
QUEUE = [
    ev("A", "ringing", 0, direction="inbound", external_number="+33612345678"),
    ev("B1", "ringing", 1, parent_call_id="A", agent="1001", direction="outbound"),
    ev("B2", "ringing", 1, parent_call_id="A", agent="1002", direction="outbound"),
    ev("B2", "answered", 6, parent_call_id="A", agent="1002", direction="outbound"),
    ev("B1", "ended", 6, parent_call_id="A", outcome="no_answer", direction="outbound"),
    ev("B2", "ended", 60, parent_call_id="A", direction="outbound", duration_s=54),
    ev("A", "ended", 60, duration_s=60),
]


def fold_in_memory(events: list[CallEvent], root_id: str = "A") -> Call:
    call = Call(platform="p", platform_call_id=root_id)
    for event in events:
        apply_event(call, event)
    return call


def test_a_queue_call_is_one_answered_call_by_the_agent_who_picked_up() -> None:
    call = fold_in_memory(QUEUE)
    assert call.ended and call.outcome == "answered"
    assert call.direction == "inbound" and call.external_number == "+33612345678"
    assert call.agent == "1002"
    assert call.answered_at == at(6) and call.ended_at == at(60)


def test_an_agent_leg_ending_does_not_end_the_call() -> None:
    call = fold_in_memory(QUEUE[:5])
    assert not call.ended and call.outcome is None


@pytest.fixture(scope="module")
def database(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    tmp: Path = tmp_path_factory.mktemp(f"legs-{db_kind}")
    env = Environment()
    env.set(
        {
            "DATABASE_URL": fresh_database(db_kind, tmp),
            "INSTANCE_DIR": str(tmp),
            "SECRET_KEY": TEST_SECRET_KEY,
        }
    )
    yield
    env.restore()


def deliver(events: list[CallEvent]) -> None:
    """As the worker does: each delivery is stored, then folded in its own transaction."""
    for event in events:
        with session_scope() as session:
            row = WebhookEvent(
                platform="p", dedupe_key=f"{event.call_id}-{event.stage}-{id(event)}",
                method="POST", body="{}", canonical=[event.to_json()],
            )  # fmt: skip
            session.add(row)
            session.flush()
            assert row.id is not None
            fold_events(session, [event], row.id)


def calls(prefix: str) -> list[Call]:
    with Session(get_engine()) as session:
        return list(session.exec(select(Call).where(Call.platform_call_id.startswith(prefix))))  # type: ignore[union-attr]


def renamed(events: list[CallEvent], tag: str) -> list[CallEvent]:
    def name(value: str | None) -> str | None:
        return f"{tag}{value}" if value else value

    return [
        e.model_copy(update={"call_id": name(e.call_id), "parent_call_id": name(e.parent_call_id)})
        for e in events
    ]


# Kwebbl: the agent leg L2 rings and answers before `bridged` says it belongs to L1.
LATE_LINK = [
    ev("L2", "ringing", 1, agent="agent-7", direction="outbound"),
    ev("L2", "answered", 5, agent="agent-7", direction="outbound"),
    ev("L2", "answered", 5, parent_call_id="L1", agent="agent-7"),  # bridged
    ev("L1", "ringing", 0, direction="inbound", external_number="+33612345679"),
    ev("L1", "ended", 40),
    ev("L2", "ended", 40, direction="outbound"),
]


def test_legs_whose_link_arrives_late_still_make_one_call(database: None) -> None:
    deliver(renamed(LATE_LINK, "late-"))
    by_id = {c.platform_call_id: c for c in calls("late-")}
    root, leg = by_id["late-L1"], by_id["late-L2"]
    assert leg.merged_into == root.id and leg.crm_status == CrmStatus.MERGED
    assert root.ended and root.crm_status == CrmStatus.PENDING
    assert (root.direction, root.agent, root.outcome) == ("inbound", "agent-7", "answered")
    assert root.answered_at == at(5)


@pytest.mark.parametrize(
    ("sample", "root_id"),
    [([QUEUE[0], QUEUE[1], QUEUE[3], QUEUE[4], QUEUE[5], QUEUE[6]], "A"), (LATE_LINK, "L1")],
    ids=["queue", "late-link"],
)
def test_every_arrival_order_gives_the_same_call(
    database: None, sample: list[CallEvent], root_id: str
) -> None:
    # 720 orders of six events; every 37th is delivered, each must fold to the same call.
    expected = state_hash(fold_in_memory(sample, root_id))
    for number, order in enumerate(itertools.islice(itertools.permutations(sample), 0, None, 37)):
        tag = f"perm-{root_id}{number}-"
        deliver(renamed(list(order), tag))
        (root,) = [c for c in calls(tag) if c.merged_into is None]
        assert root.platform_call_id == f"{tag}{root_id}"
        assert state_hash(root) == expected, order
