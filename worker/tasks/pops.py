"""Screen-pops: the caller's card, in the browser of the agent whose phone rings.

Each agent has a Redis stream (``callhook:agent:<email>``) holding snapshots of the
cards of their calls; the agent page reads it with a blocking XREAD, so several tabs,
reconnects (``Last-Event-ID`` is a stream id) and several web processes all work
without any state in the web process. A card is a whole snapshot: the page only
replaces what it shows, so a late or repeated message can never leave it wrong.

The CRM call log is not on this path: the pop has its own task and queue, and a
failed lookup still pops the number at once (a retry would come after the ringing).
What is not needed to recognise the caller (their open deal: one more HubSpot search)
comes in a second snapshot, after the card is shown.

Each pop is also kept in the database (`CallPop`): the card's life in Redis is short,
but who it was shown to decides who may write the call's wrap-up, and whose missed
calls a ring group's unanswered call is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import redis
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from worker.core.agents import Agent, AgentDirectory
from worker.core.db import get_engine, session_scope
from worker.core.events import CallEvent, Direction, Stage
from worker.core.metrics import POP_LATENCY, POPS_SENT
from worker.core.models import Call, CallPop, CrmStatus, utcnow
from worker.core.numbers import display
from worker.core.redis_conn import connect
from worker.core.settings import get_settings
from worker.crm.base import Contact, CrmError, CrmLookups
from worker.crm.factory import crm_for_lookups
from worker.crm.mapping_files import worker_mapping_files

log = logging.getLogger("callhook.pops")

STREAM_MAXLEN = 200
# A ring group pops one card per agent: one deal search serves them all.
DEAL_CACHE_S = 60
MAX_NOTE_ON_CARD = 300
CardState = Literal["ringing", "answered", "withdrawn", "ended"]
# How far along a card is: a late update never takes it back.
STATE_RANK: dict[str, int] = {"ringing": 0, "answered": 1, "withdrawn": 2, "ended": 2}


def stream_key(email: str) -> str:
    return f"callhook:agent:{email.lower()}"


def pops_key(call_id: int) -> str:
    """The agents a call popped for, and their cards: who gets the later updates."""
    return f"callhook:pops:{call_id}"


@dataclass(frozen=True)
class PopAction:
    """What folding one event means for the pops of its call."""

    call_id: int
    ring_email: str | None = None  # pop a new card for this agent (needs a CRM lookup)
    update: bool = False  # push the call's new state to every agent it popped for


def is_inbound(call: Call, event: CallEvent) -> bool:
    """Whether the call rings an agent because a customer called.

    The direction is the call's own leg's word. An agent's leg ringing before that leg
    was heard of (KAZOO's B leg delivered first) counts as inbound: a leg that rings an
    agent's phone is a call coming to them.
    """
    if call.direction is not None:
        return call.direction == Direction.INBOUND
    if event.direction is not None:
        return event.direction == Direction.INBOUND
    return event.parent_call_id is not None and event.agent is not None


def pop_actions(call: Call, event: CallEvent, agents: AgentDirectory) -> list[PopAction]:
    """Pure: the pops to make after `event` was folded into `call`."""
    assert call.id is not None
    if not is_inbound(call, event):
        return []
    actions = []
    if event.stage == Stage.RINGING and not call.ended and call.answered_at is None:
        agent = agents.find(call.platform, event.agent)
        if agent is not None:
            actions.append(PopAction(call.id, ring_email=agent.email))
    if event.stage != Stage.RINGING or call.ended:
        actions.append(PopAction(call.id, update=True))
    return actions


def card_state(call: Call, agent: Agent, agents: AgentDirectory) -> CardState:
    """Where the call stands for `agent`. A call a colleague of the ring group picked up
    stays "withdrawn" for the others when it ends: it was never theirs to wrap up."""
    if call.answered_at is not None:
        answering = agents.find(call.platform, call.agent)
        if answering is not None and answering.email != agent.email:
            return "withdrawn"
    if call.ended:
        return "ended"
    if call.answered_at is None:
        return "ringing"
    return "answered"


def wrap_up_of(call: Call, outcomes: dict[str, str]) -> dict[str, Any] | None:
    """The agent's wrap-up of a call as cards and lists show it, or None."""
    if not (call.agent_outcome or call.agent_note):
        return None
    return {
        "outcome": call.agent_outcome,
        "outcome_label": outcomes.get(call.agent_outcome or "") or call.agent_outcome,
        "note": call.agent_note,
        "by": call.agent_wrapped_by,
        "at": call.agent_wrapped_at.isoformat() if call.agent_wrapped_at else None,
    }


def last_call(
    session: Session, call: Call, outcomes: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The caller's previous call, from callhook's own log (no CRM request), with what the
    agent noted after it (the start of the note: a card is no place for a long text)."""
    if not call.external_number:
        return None
    previous = session.exec(
        select(Call)
        .where(
            Call.external_number == call.external_number,
            Call.id != call.id,
            Call.ended,
            col(Call.merged_into).is_(None),
            Call.crm_status != CrmStatus.MERGED,
        )
        .order_by(col(Call.ended_at).desc())
        .limit(1)
    ).first()
    if previous is None:
        return None
    found: dict[str, Any] = {
        "at": (previous.ended_at or previous.updated_at).isoformat(),
        "direction": previous.direction,
        "outcome": previous.outcome,
    }
    if previous.agent_outcome:
        found["outcome_label"] = (outcomes or {}).get(previous.agent_outcome)
    if previous.agent_note:
        note = previous.agent_note.strip()
        found["note"] = note if len(note) <= MAX_NOTE_ON_CARD else note[:MAX_NOTE_ON_CARD] + "…"
    return found


def build_card(
    session: Session,
    call: Call,
    agent: Agent,
    agents: AgentDirectory,
    crm: CrmLookups,
    *,
    ttl_s: float,
) -> dict[str, Any]:
    """The whole card for `agent`: who calls, their record, their last call, the state."""
    outcomes = crm.outcome_choices()
    card: dict[str, Any] = {
        "call_key": f"{call.platform}:{call.platform_call_id}",
        "call_id": call.id,
        "platform": call.platform,
        "state": card_state(call, agent, agents),
        "answered": call.answered_at is not None,
        "number": call.external_number,
        "number_display": display(call.external_number, call.external_number_raw),
        "contact": None,
        "last_call": last_call(session, call, outcomes),
        "wrap_up": wrap_up_of(call, outcomes),
        "expires_at": (utcnow() + timedelta(seconds=ttl_s)).isoformat(),
    }
    if call.external_number:
        try:
            contact = crm.find_contact_by_number(call.external_number)
        except CrmError as exc:
            # The phone rings now: show the number at once rather than retry.
            log.warning("pop.lookup_failed call=%s error=%s", call.id, exc)
            card["lookup_error"] = "HubSpot did not answer; the caller may be a known contact."
            return card
        if contact is not None:
            card["contact"] = {
                "id": contact.id,
                "name": contact.name or contact.properties.get("email") or "(no name)",
                "company": contact.properties.get("company"),
                "owner": _owner_name(crm, contact, call.id),
                "url": _contact_url(crm, contact.id, call.id),
            }
    return card


def _owner_name(crm: CrmLookups, contact: Contact, call_id: int | None) -> str | None:
    """The contact owner's name; a failed owner lookup costs the card this line only."""
    try:
        owner = crm.owner(contact.properties.get("hubspot_owner_id"))
    except CrmError as exc:
        log.warning("pop.owner_lookup_failed call=%s error=%s", call_id, exc)
        return None
    return " ".join(filter(None, [owner.get("first"), owner.get("last")])) if owner else None


def _contact_url(crm: CrmLookups, contact_id: str, call_id: int | None) -> str | None:
    """The record link; a failed account-info lookup costs the card its link only."""
    try:
        return crm.record_url("contact", contact_id)
    except CrmError as exc:
        log.warning("pop.record_link_failed call=%s error=%s", call_id, exc)
        return None


def publish(
    client: redis.Redis, call_id: int, email: str, card: dict[str, Any], ttl_s: float
) -> str:
    """Append the card to the agent's stream and remember it under its call."""
    pipe = client.pipeline()
    _queue_publish(pipe, call_id, email, card, ttl_s)
    entry_id, *_ = pipe.execute()
    return str(entry_id)


def _queue_publish(pipe: Any, call_id: int, email: str, card: dict[str, Any], ttl_s: float) -> None:
    body = json.dumps(card)
    pipe.xadd(stream_key(email), {"card": body}, maxlen=STREAM_MAXLEN, approximate=True)
    pipe.hset(pops_key(call_id), email.lower(), body)
    pipe.expire(pops_key(call_id), int(ttl_s))


def amend(
    client: redis.Redis,
    call_id: int,
    email: str,
    change: Callable[[dict[str, Any]], bool],
    ttl_s: float,
) -> bool:
    """Change the card `email` was shown for a call and publish it, if `change` says it
    changed anything; False when there is no such card (any more).

    Read, change and publish are one optimistic transaction on the call's pops: two
    amendments at once (the call's new state, its deal found meanwhile) both land, and
    neither publishes a card without the other's change.
    """
    key = pops_key(call_id)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                # Under WATCH the pipeline runs commands at once: a value, not a Pipeline.
                body: Any = pipe.hget(key, email.lower())
                if body is None:
                    pipe.unwatch()
                    return False
                card = json.loads(body)
                if not change(card):
                    pipe.unwatch()
                    return False
                pipe.multi()
                _queue_publish(pipe, call_id, email, card, ttl_s)
                pipe.execute()
                return True
            except redis.WatchError:
                continue


def push_update(client: redis.Redis, call: Call, agents: AgentDirectory, ttl_s: float) -> int:
    """Send the call's new state to every agent it popped for; returns how many."""
    assert call.id is not None
    sent = 0
    for email in _texts(client.hkeys(pops_key(call.id))):
        agent = agents.by_email(email)
        if agent is None:
            continue
        state = card_state(call, agent, agents)
        answered = call.answered_at is not None

        def change(card: dict[str, Any], state: str = state, answered: bool = answered) -> bool:
            # Updates run after their fold commits, not in fold order (another event's
            # update, or the pop's own catch-up, may read the call earlier and land later):
            # a card never goes back to an earlier state.
            if STATE_RANK[state] < STATE_RANK.get(card.get("state", "ringing"), 0):
                state = str(card["state"])
            answered = answered or bool(card.get("answered"))
            if card.get("state") == state and card.get("answered") == answered:
                return False
            card["state"], card["answered"] = state, answered
            return True

        sent += amend(client, call.id, email, change, ttl_s)
    return sent


def push_wrap_up(client: redis.Redis, call: Call, outcomes: dict[str, str], ttl_s: float) -> int:
    """Show a saved wrap-up on every card of the call still in Redis (the agent's other
    tabs, a colleague's card of the same missed call); returns how many."""
    assert call.id is not None
    wrap_up = wrap_up_of(call, outcomes)

    def change(card: dict[str, Any]) -> bool:
        if card.get("wrap_up") == wrap_up:
            return False
        card["wrap_up"] = wrap_up
        return True

    return sum(
        amend(client, call.id, email, change, ttl_s)
        for email in _texts(client.hkeys(pops_key(call.id)))
    )


def _texts(values: Iterable[bytes | str]) -> list[str]:
    """Redis answers text (decode_responses) or bytes, by how the client was made."""
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def remember_pop(call_id: int, email: str, contact_name: str | None) -> None:
    """Keep in the database that `email` was shown this call's card (once per agent)."""
    with session_scope() as session:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(CallPop)
            .values(
                call_id=call_id,
                agent_email=email.lower(),
                shown_at=utcnow(),
                contact_name=(contact_name or "")[:200] or None,
            )
            .on_conflict_do_nothing(index_elements=["call_id", "agent_email"])
        )


def deal_for_card(crm: CrmLookups, client: redis.Redis, contact_id: str) -> dict[str, Any] | None:
    """The contact's open deal as a card shows it (name, amount, record link), or None.

    Only when mappings/hubspot.yaml asks for open deals (`associations.open_deal`): it is
    one more search, which the operator chose to spend. Remembered a minute, so the cards
    of one ring group cost one search.
    """
    key = f"callhook:deal:{contact_id}"
    cached = client.get(key)
    if cached is not None:
        return json.loads(cached)
    found = crm.open_deal(contact_id)
    deal = None
    if found is not None:
        props = found.get("properties") or {}
        deal = {
            "id": str(found["id"]),
            "name": props.get("dealname") or "(no name)",
            "amount": props.get("amount"),
            "url": crm.record_url("deal", str(found["id"])),
        }
    client.set(key, json.dumps(deal), ex=DEAL_CACHE_S)
    return deal


def ring(call_id: int, email: str, received_at: float | None = None) -> dict[str, Any] | None:
    """The screen_pop task: look the caller up and pop the card for `email`.

    `received_at` (epoch seconds): when the ringing delivery arrived, the start of the
    pop's latency (`callhook_pop_latency_seconds`), which ends when the card is in the stream.
    """
    settings = get_settings()
    agents = worker_mapping_files().agents
    agent = agents.by_email(email)
    client = connect()
    with Session(get_engine()) as session:
        call = session.get(Call, call_id)
        if call is None or agent is None:
            return None
        crm = crm_for_lookups()
        card = build_card(session, call, agent, agents, crm, ttl_s=settings.pop_ttl_s)
        publish(client, call_id, agent.email, card, settings.pop_ttl_s)
        POPS_SENT.inc()
        POP_LATENCY.observe_since(received_at)
        # The call may have been answered or ended during the lookup, and its update
        # found no pop to update yet: bring this card up to date.
        session.refresh(call)
        push_update(client, call, agents, settings.pop_ttl_s)
    contact = card["contact"]
    remember_pop(call_id, agent.email, contact["name"] if contact else None)
    log.info("pop.sent call=%s agent=%s known=%s", call_id, email, bool(contact))
    if contact and crm.wants_open_deal():
        try:
            deal = deal_for_card(crm, client, contact["id"])
        except CrmError as exc:  # the card is shown; the deal is a bonus
            log.warning("pop.deal_failed call=%s error=%s", call_id, exc)
            deal = None
        if deal is not None:

            def add_deal(shown: dict[str, Any]) -> bool:
                shown["deal"] = deal
                return True

            amend(client, call_id, agent.email, add_deal, settings.pop_ttl_s)
            card["deal"] = deal
    return card


def update(call_ids: set[int]) -> None:
    """Push the new state of these calls to the agents they popped for."""
    settings = get_settings()
    agents = worker_mapping_files().agents
    client = connect()
    with Session(get_engine()) as session:
        for call_id in sorted(call_ids):
            call = session.get(Call, call_id)
            if call is not None:
                push_update(client, call, agents, settings.pop_ttl_s)
