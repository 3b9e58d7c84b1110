"""Screen-pops: the caller's card, in the browser of the agent whose phone rings.

Each agent has a Redis stream (``callhook:agent:<email>``) holding snapshots of the
cards of their calls; the agent page reads it with a blocking XREAD, so several tabs,
reconnects (``Last-Event-ID`` is a stream id) and several web processes all work
without any state in the web process. A card is a whole snapshot: the page only
replaces what it shows, so a late or repeated message can never leave it wrong.

The CRM call log is not on this path: the pop has its own task and queue, and a
failed lookup still pops the number at once (a retry would come after the ringing).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import redis
from sqlmodel import Session, select

from worker.agents import Agent, AgentDirectory
from worker.crm.base import CrmError
from worker.crm.factory import crm_for_lookups
from worker.crm.hubspot import HubSpotCrm
from worker.db import get_engine
from worker.events import CallEvent, Direction, Stage
from worker.mapping_files import worker_mapping_files
from worker.models import Call, CrmStatus, utcnow
from worker.numbers import display
from worker.redis_conn import connect
from worker.settings import get_settings

log = logging.getLogger("callhook.pops")

STREAM_MAXLEN = 200
ACCOUNT_KEY = "callhook:hubspot:account"
CardState = Literal["ringing", "answered", "withdrawn", "ended"]


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
    if call.ended:
        return "ended"
    if call.answered_at is None:
        return "ringing"
    answering = agents.find(call.platform, call.agent)
    if answering is not None and answering.email != agent.email:
        return "withdrawn"  # a colleague of the ring group picked up
    return "answered"


def record_url(crm: HubSpotCrm, client: redis.Redis, portal_id: str, contact_id: str) -> str | None:
    """https://app.hubspot.com/contacts/<portal>/record/0-1/<contact>, portal from config or
    HubSpot's account-info API (remembered a day; EU portals have their own host)."""
    host = "app.hubspot.com"
    if not portal_id:
        cached = client.get(ACCOUNT_KEY)
        if cached is None:
            details = crm.transport.account_details()
            cached = json.dumps(details)
            client.set(ACCOUNT_KEY, cached, ex=86_400)
        details = json.loads(cached)
        portal_id = str(details.get("portalId") or "")
        host = details.get("uiDomain") or host
    if not portal_id or contact_id.startswith("dry-run"):
        return None
    return f"https://{host}/contacts/{portal_id}/record/0-1/{contact_id}"


def last_call(session: Session, call: Call) -> dict[str, Any] | None:
    """The caller's previous call, from callhook's own log (no CRM request)."""
    if not call.external_number:
        return None
    previous = session.exec(
        select(Call)
        .where(
            Call.external_number == call.external_number,
            Call.id != call.id,
            Call.ended,
            Call.merged_into.is_(None),  # type: ignore[union-attr]
            Call.crm_status != CrmStatus.MERGED,
        )
        .order_by(Call.ended_at.desc())  # type: ignore[union-attr]
        .limit(1)
    ).first()
    if previous is None:
        return None
    return {
        "at": (previous.ended_at or previous.updated_at).isoformat(),
        "direction": previous.direction,
        "outcome": previous.outcome,
    }


def build_card(
    session: Session,
    call: Call,
    agent: Agent,
    agents: AgentDirectory,
    crm: HubSpotCrm,
    client: redis.Redis,
    *,
    portal_id: str,
    ttl_s: float,
) -> dict[str, Any]:
    """The whole card for `agent`: who calls, their record, their last call, the state."""
    card: dict[str, Any] = {
        "call_key": f"{call.platform}:{call.platform_call_id}",
        "call_id": call.id,
        "platform": call.platform,
        "state": card_state(call, agent, agents),
        "number": call.external_number,
        "number_display": display(call.external_number, call.external_number_raw),
        "contact": None,
        "last_call": last_call(session, call),
        "expires_at": (utcnow() + timedelta(seconds=ttl_s)).isoformat(),
    }
    if call.external_number:
        try:
            contact = crm.find_contact_by_number(call.external_number)
            if contact is not None:
                owner = crm.owner(contact.properties.get("hubspot_owner_id"))
                card["contact"] = {
                    "id": contact.id,
                    "name": contact.name or contact.properties.get("email") or "(no name)",
                    "company": contact.properties.get("company"),
                    "owner": " ".join(filter(None, [owner.get("first"), owner.get("last")]))
                    if owner
                    else None,
                    "url": record_url(crm, client, portal_id, contact.id),
                }
        except CrmError as exc:
            # The phone rings now: show the number at once rather than retry.
            log.warning("pop.lookup_failed call=%s error=%s", call.id, exc)
            card["lookup_error"] = "HubSpot did not answer; the caller may be a known contact."
    return card


def publish(
    client: redis.Redis, call_id: int, email: str, card: dict[str, Any], ttl_s: float
) -> str:
    """Append the card to the agent's stream and remember it under its call."""
    body = json.dumps(card)
    pipe = client.pipeline()
    pipe.xadd(stream_key(email), {"card": body}, maxlen=STREAM_MAXLEN, approximate=True)
    pipe.hset(pops_key(call_id), email.lower(), body)
    pipe.expire(pops_key(call_id), int(ttl_s))
    entry_id, *_ = pipe.execute()
    return str(entry_id)


def push_update(client: redis.Redis, call: Call, agents: AgentDirectory, ttl_s: float) -> int:
    """Send the call's new state to every agent it popped for; returns how many."""
    assert call.id is not None
    sent = 0
    for email, body in client.hgetall(pops_key(call.id)).items():
        agent = agents.by_email(email)
        if agent is None:
            continue
        card = json.loads(body)
        state = card_state(call, agent, agents)
        if card.get("state") == state:
            continue
        card["state"] = state
        publish(client, call.id, email, card, ttl_s)
        sent += 1
    return sent


def ring(call_id: int, email: str) -> dict[str, Any] | None:
    """The screen_pop task: look the caller up and pop the card for `email`."""
    settings = get_settings()
    agents = worker_mapping_files().agents
    agent = agents.by_email(email)
    client = connect()
    with Session(get_engine()) as session:
        call = session.get(Call, call_id)
        if call is None or agent is None:
            return None
        card = build_card(
            session, call, agent, agents, crm_for_lookups(), client,
            portal_id=settings.hubspot_portal_id, ttl_s=settings.pop_ttl_s,
        )  # fmt: skip
        publish(client, call_id, agent.email, card, settings.pop_ttl_s)
        # The call may have been answered or ended during the lookup, and its update
        # found no pop to update yet: bring this card up to date.
        session.refresh(call)
        push_update(client, call, agents, settings.pop_ttl_s)
    log.info("pop.sent call=%s agent=%s known=%s", call_id, email, bool(card["contact"]))
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
