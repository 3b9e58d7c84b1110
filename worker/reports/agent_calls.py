"""An agent's day and their wrap-ups, from callhook's own tables (no CRM request).

The agent page shows, beside the live cards, the agent's calls of the day and the missed
calls still to call back, and lets the agent write an outcome and a note after a call.
Everything here reads and writes the ``calls`` table (and ``call_pops``, who was shown
which card): a page load costs HubSpot nothing, and the lists work in a dry run too.

Whose calls are they? An agent's calls are those whose agent (the platform's extension
or user id, `agents.yaml`) is theirs, plus those whose card was shown to them (a ring
group rings several agents; the call row names one of them), except the calls a
colleague answered: those were the colleague's.

Missed calls to call back: inbound calls of the agent's that ended unanswered, one entry
per number. An entry goes away once the customer and the company have spoken since: an
answered call with that number, either way (a colleague's call back, or the customer's
next call that someone picked up), whoever made it. A call back nobody answered does not
clear it (the customer is still waiting); the entry says when it was last tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, select

from worker.core.agents import Agent, AgentDirectory
from worker.core.db import session_scope
from worker.core.events import Direction, Outcome
from worker.core.fold import sync_hash
from worker.core.models import Call, CallPop, CrmStatus, utcnow
from worker.core.numbers import display
from worker.tasks.pops import wrap_up_of

MAX_CALLS = 200  # a day's list; past that, the newest ones and `truncated`
MAX_NOTE_CHARS = 5000
# Calls with these numbers since the first missed one: enough for a busy day's call-backs.
MAX_LATER_CALLS = 2000


class WrapUpRefused(Exception):
    """A wrap-up that cannot be saved: the HTTP status, an error code and the reason."""

    def __init__(self, status: int, error: str, reason: str):
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


@dataclass(frozen=True)
class SavedWrapUp:
    call_id: int
    wrap_up: dict[str, Any]
    changed: bool  # False when the same outcome and note were saved again (nothing to send)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants a calendar day of the agent's time zone starts and ends at
    (23 or 25 hours long on the days clocks change)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))


def when(call: Call) -> datetime:
    """When a call happened, as its lists sort and show it."""
    moment = call.started_at or call.answered_at or call.ended_at or call.updated_at
    return moment


def _when_column() -> Any:
    return sa.func.coalesce(Call.started_at, Call.ended_at)


def _answered(call: Call) -> bool:
    return call.answered_at is not None or call.outcome == Outcome.ANSWERED.value


def _theirs(agent: Agent) -> Any:
    """SQL: the call's agent is one of this agent's identifiers on its platform."""
    clauses = [
        sa.and_(col(Call.platform) == platform, col(Call.agent).in_([str(i) for i in idents]))
        for platform, idents in agent.extensions.items()
        if idents
    ]
    return sa.or_(*clauses) if clauses else sa.false()


def _shown_to(session: Session, email: str, start: datetime, end: datetime) -> set[int]:
    """The calls whose card was shown to `email` around that day (legs followed to their call)."""
    margin = timedelta(hours=6)  # a card shows while it rings: near the call's start
    ids = set(
        session.exec(
            select(CallPop.call_id)
            .where(
                CallPop.agent_email == email.lower(),
                CallPop.shown_at >= start - margin,
                CallPop.shown_at < end + margin,
            )
            .limit(MAX_CALLS * 5)
        ).all()
    )
    if not ids:
        return ids
    legs = session.exec(
        select(Call.id, Call.merged_into).where(
            col(Call.id).in_(ids),
            col(Call.merged_into).is_not(None),
        )
    ).all()
    for leg, root in legs:
        ids.discard(leg)
        if root is not None:
            ids.add(root)
    return ids


def _colleague_answered(call: Call, agent: Agent, agents: AgentDirectory) -> bool:
    if not _answered(call):
        return False
    answering = agents.find(call.platform, call.agent)
    return answering is not None and answering.email.lower() != agent.email.lower()


def may_wrap_up(session: Session, call: Call, agent: Agent, agents: AgentDirectory) -> str | None:
    """None when `agent` may write this call's outcome and note, else why not.

    The agent whose card it was: the agent who answered it; for a call nobody (known)
    answered, the call's agent or any agent its card was shown to (a ring group's missed
    call is everyone's). A colleague who only saw the card ring may not write over the
    wrap-up of the agent who had the call.
    """
    answering = agents.find(call.platform, call.agent)
    if answering is not None and answering.email.lower() == agent.email.lower():
        return None
    if _answered(call) and answering is not None:
        return f"{answering.name or answering.email} had this call: only they may wrap it up"
    assert call.id is not None
    legs = session.exec(select(Call.id).where(Call.merged_into == call.id)).all()
    shown = session.exec(
        select(CallPop.id).where(
            col(CallPop.call_id).in_([call.id, *legs]),
            CallPop.agent_email == agent.email.lower(),
        )
    ).first()
    if shown is None:
        return "this call was not yours: it neither rang for you nor was made by you"
    return None


def save_wrap_up(
    call_id: int,
    agent: Agent,
    agents: AgentDirectory,
    outcome: str | None,
    note: str | None,
    outcomes: dict[str, str],
) -> SavedWrapUp:
    """Store the agent's outcome and note on the call and mark it for a CRM sync.

    The call row is locked, as the fold and the sync lock it: the wrap-up and a late
    event never overwrite each other, and a sync running meanwhile sees the row's hash
    move and syncs once more (`call_logging._finish`). Raises WrapUpRefused.
    """
    with session_scope() as session:
        call = session.get(Call, call_id, with_for_update=True, populate_existing=True)
        if call is not None and call.merged_into is not None:  # a leg: its call's card
            call = session.get(Call, call.merged_into, with_for_update=True, populate_existing=True)
        if call is None:
            raise WrapUpRefused(404, "no_such_call", f"there is no call {call_id}")
        if not call.ended:
            raise WrapUpRefused(
                409, "not_ended", "this call is still going on: wrap it up once it has ended"
            )
        why = may_wrap_up(session, call, agent, agents)
        if why is not None:
            raise WrapUpRefused(403, "not_your_call", why)
        before = sync_hash(call)
        call.agent_outcome = outcome or None
        call.agent_note = note or None
        call.agent_wrapped_by = agent.email.lower()
        call.agent_wrapped_at = utcnow()
        changed = sync_hash(call) != before
        if changed:
            # Like new data from the platform: one more sync (a failed call gets a new try).
            call.crm_status = CrmStatus.PENDING
        session.add(call)
        assert call.id is not None
        return SavedWrapUp(call.id, wrap_up_of(call, outcomes) or {}, changed)


def _contact_names(session: Session, calls: list[Call]) -> dict[int, str]:
    """The caller's name per call: the contact it was logged on, else the one its card showed."""
    names = {c.id: c.crm_contact_name for c in calls if c.id is not None and c.crm_contact_name}
    missing = [c.id for c in calls if c.id is not None and c.id not in names]
    if missing:
        rows = session.exec(
            select(CallPop.call_id, CallPop.contact_name).where(
                col(CallPop.call_id).in_(missing),
                col(CallPop.contact_name).is_not(None),
            )
        ).all()
        for call_id, name in rows:
            if name:
                names.setdefault(call_id, name)
    return names


def _is_missed(call: Call) -> bool:
    return (
        call.direction == Direction.INBOUND.value
        and call.ended
        and not _answered(call)
        and bool(call.external_number)
    )


def _missed_to_call_back(
    session: Session, calls: list[Call], names: dict[int, str]
) -> list[dict[str, Any]]:
    """One entry per number among `calls` missed and not since answered either way."""
    missed = [c for c in calls if _is_missed(c)]
    if not missed:
        return []
    numbers = {c.external_number for c in missed}
    first = min(when(c) for c in missed)
    later = session.exec(
        select(Call)
        .where(
            col(Call.external_number).in_(numbers),
            col(Call.merged_into).is_(None),
            _when_column() >= first,
        )
        .order_by(_when_column())
        .limit(MAX_LATER_CALLS)
    ).all()
    entries = []
    for number in numbers:
        mine = sorted((c for c in missed if c.external_number == number), key=when)
        spoke = [
            when(c)
            for c in later
            if c.external_number == number
            and _answered(c)
            and c.direction in (Direction.INBOUND.value, Direction.OUTBOUND.value)
        ]
        waiting = [c for c in mine if not any(t > when(c) for t in spoke)]
        if not waiting:
            continue
        last = waiting[-1]
        tried = [
            when(c)
            for c in later
            if c.external_number == number
            and c.direction == Direction.OUTBOUND.value
            and when(c) > when(last)
        ]
        entries.append(
            {
                "call_id": last.id,
                "at": when(last).isoformat(),
                "number": number,
                "number_display": display(number, last.external_number_raw),
                "contact_name": next(
                    (names[c.id] for c in reversed(waiting) if c.id in names), None
                ),
                "count": len(waiting),
                "tried_at": max(tried).isoformat() if tried else None,
            }
        )
    return sorted(entries, key=lambda e: e["at"], reverse=True)


def day_view(
    agent: Agent,
    agents: AgentDirectory,
    start: datetime,
    end: datetime,
    outcomes: dict[str, str],
) -> dict[str, Any]:
    """The agent's calls between `start` and `end` (newest first, at most MAX_CALLS) and
    the missed ones still to call back."""
    with session_scope() as session:
        shown = _shown_to(session, agent.email, start, end)
        when_col = _when_column()
        rows = session.exec(
            select(Call)
            .where(
                col(Call.merged_into).is_(None),
                sa.or_(
                    sa.and_(col(Call.started_at) >= start, col(Call.started_at) < end),
                    sa.and_(
                        col(Call.started_at).is_(None),
                        col(Call.ended_at) >= start,
                        col(Call.ended_at) < end,
                    ),
                ),
                sa.or_(_theirs(agent), col(Call.id).in_(shown) if shown else sa.false()),
            )
            .order_by(when_col.desc(), col(Call.id).desc())
            .limit(MAX_CALLS + 1)
        ).all()
        truncated = len(rows) > MAX_CALLS
        calls = [c for c in rows[:MAX_CALLS] if not _colleague_answered(c, agent, agents)]
        names = _contact_names(session, calls)
        listed = []
        for call in calls:
            assert call.id is not None
            listed.append(
                {
                    "call_id": call.id,
                    "at": when(call).isoformat(),
                    "direction": call.direction,
                    "number": call.external_number,
                    "number_display": display(call.external_number, call.external_number_raw),
                    "contact_name": names.get(call.id),
                    "outcome": call.outcome,
                    "answered": _answered(call),
                    "ended": call.ended,
                    "duration_s": call.talk_s if call.talk_s is not None else call.duration_s,
                    "wrap_up": wrap_up_of(call, outcomes),
                    # Every call listed is the agent's or was shown to them and not taken by
                    # a colleague: exactly those `may_wrap_up` lets them write.
                    "can_wrap_up": call.ended,
                }
            )
        return {
            "calls": listed,
            "missed": _missed_to_call_back(session, calls, names),
            "truncated": truncated,
        }
