"""The call-state fold: any order, any number of duplicates, the same call."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from worker.core.events import CallEvent
from worker.core.fold import apply_event, state_hash
from worker.core.models import Call


def at(second: int) -> datetime:
    return datetime(2026, 3, 18, 12, 0, second, tzinfo=UTC)


EVENTS = [
    CallEvent(
        platform="p",
        call_id="c",
        stage="ringing",
        direction="inbound",
        external_number="+33612345678",
        agent="1001",
        occurred_at=at(0),
    ),
    CallEvent(platform="p", call_id="c", stage="answered", occurred_at=at(5), agent="1002"),
    CallEvent(platform="p", call_id="c", stage="ended", occurred_at=at(50), duration_s=50),
    CallEvent(
        platform="p",
        call_id="c",
        stage="cdr",
        duration_s=45,
        talk_s=40,
        recording_url="https://rec.example/1.mp3",
        occurred_at=at(59),
    ),
]


def fold(events: list[CallEvent]) -> Call:
    call = Call(platform="p", platform_call_id="c")
    for event in events:
        apply_event(call, event)
    return call


def test_every_order_and_duplicates_converge() -> None:
    reference = state_hash(fold(EVENTS))
    for order in itertools.permutations(EVENTS):
        assert state_hash(fold([*order, order[0], order[-1]])) == reference


def test_final_state_takes_the_strongest_source() -> None:
    call = fold(list(reversed(EVENTS)))
    assert call.ended and call.stage == "cdr"
    assert (call.duration_s, call.talk_s) == (45, 40)  # the CDR beats the live estimate
    assert call.agent == "1002"  # who answered, not who rang first
    assert call.started_at == at(0) and call.answered_at == at(5)
    assert call.outcome == "answered"


def test_late_ringing_after_end_changes_nothing() -> None:
    call = fold(EVENTS)
    before = state_hash(call)
    apply_event(
        call,
        CallEvent(
            platform="p",
            call_id="c",
            stage="ringing",
            agent="9999",
            direction="outbound",
            occurred_at=at(58),
        ),
    )
    assert state_hash(call) == before


def test_unanswered_inbound_call_is_a_missed_call() -> None:
    call = fold(
        [EVENTS[0], CallEvent(platform="p", call_id="c", stage="ended", occurred_at=at(20))]
    )
    assert call.outcome == "no_answer"


def test_equal_events_disagreeing_converge_whatever_their_order() -> None:
    # Same stage, same time, different agents (two legs reported at once): no "last wins".
    a = CallEvent(platform="p", call_id="c", stage="answered", agent="1001", occurred_at=at(5))
    b = CallEvent(platform="p", call_id="c", stage="answered", agent="1002", occurred_at=at(5))
    assert fold([a, b]).agent == fold([b, a]).agent
