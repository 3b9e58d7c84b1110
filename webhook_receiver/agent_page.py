"""The agent page: ``/agent`` shows the caller's card while the phone rings.

The page keeps a Server-Sent Events stream (``/agent/stream``) open on the agent's
Redis stream (see ``worker.pops``). Every web process can serve any agent: the
stream id is the SSE event id, so the browser's automatic reconnect resumes with
``Last-Event-ID`` wherever it lands. A comment line every ``HEARTBEAT_S`` keeps the
connection alive through routers that cut idle ones (Heroku: 55 s).

Each open page holds one gunicorn thread (gthread workers): size
WEB_CONCURRENCY * WEB_THREADS for the number of agents online plus webhook traffic.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import phonenumbers
import redis
from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request

from worker.agent_links import email_for
from worker.agents import Agent
from worker.contacts import ensure_contact
from worker.crm.base import CrmError
from worker.crm.factory import crm_for_lookups
from worker.models import utcnow
from worker.pops import record_url, stream_key
from worker.redis_conn import connect, redis_url
from worker.settings import get_settings

bp = Blueprint("agent", __name__)
log = logging.getLogger("callhook.agent")

HEARTBEAT_S = 15
REPLAY_DEPTH = 100


def current_agent() -> tuple[Agent, str]:
    """The agent whose signed link this request carries, else 403 with the reason."""
    token = request.args.get("k") or request.headers.get("X-Callhook-Agent") or ""
    email = email_for(token) if token else None
    if email is None:
        abort(403, description="this agent link is invalid or was revoked; ask for a new one")
    agent = current_app.extensions["callhook.mappings"].agents.by_email(email)
    if agent is None:
        abort(403, description=f"{email} is no longer in agents.yaml")
    return agent, token


@bp.get("/agent")
def page():  # type: ignore[no-untyped-def]
    agent, token = current_agent()
    return render_template("agent.html", agent=agent, token=token)


def _sse(entry_id: str, card: str) -> str:
    return f"id: {entry_id}\nevent: card\ndata: {card}\n\n"


def _still_showing(card: dict[str, Any], now: datetime) -> bool:
    if card.get("state") not in ("ringing", "answered"):
        return False
    return datetime.fromisoformat(card["expires_at"]) > now


def replay(client: redis.Redis, key: str, last_id: str | None) -> tuple[list[str], str]:
    """What a (re)connecting page must see first, and the stream id to read on from.

    With Last-Event-ID: everything after it. Without: the cards still ringing or live,
    newest state per call, so a fresh tab shows the call that is ringing now.
    """
    if last_id:
        try:
            entries = client.xrange(key, min=f"({last_id}", max="+")
        except redis.ResponseError:  # not a stream id: start afresh
            return replay(client, key, None)
        return [_sse(i, f["card"]) for i, f in entries], (entries[-1][0] if entries else last_id)
    entries = client.xrevrange(key, count=REPLAY_DEPTH)
    if not entries:
        return [], "0-0"
    latest: dict[str, tuple[str, str]] = {}
    for entry_id, fields in reversed(entries):
        latest[json.loads(fields["card"])["call_key"]] = (entry_id, fields["card"])
    now = utcnow()
    shown = [_sse(i, c) for i, c in sorted(latest.values()) if _still_showing(json.loads(c), now)]
    return shown, entries[0][0]


@bp.get("/agent/stream")
def stream():  # type: ignore[no-untyped-def]
    agent, token = current_agent()
    key = stream_key(agent.email)
    last = request.headers.get("Last-Event-ID") or request.args.get("last") or None
    # Its own connection: a blocking read must outlive the usual short socket timeout.
    client = redis.Redis.from_url(
        redis_url(), socket_timeout=HEARTBEAT_S + 10, socket_connect_timeout=5,
        decode_responses=True,
    )  # fmt: skip

    def events() -> Iterator[str]:
        try:
            first, position = replay(client, key, last)
            yield f"retry: 3000\n: connected as {agent.email}\n\n"
            yield from first
            while True:
                found = client.xread({key: position}, block=HEARTBEAT_S * 1000, count=50)
                if not found:
                    if email_for(token) is None:  # revoked while open: close the page's stream
                        yield "event: revoked\ndata: {}\n\n"
                        return
                    yield ": heartbeat\n\n"
                    continue
                for entry_id, fields in found[0][1]:
                    position = entry_id
                    yield _sse(entry_id, fields["card"])
        except redis.RedisError as exc:
            # The browser reconnects by itself and resumes from its last event id.
            log.warning("agent.stream_lost agent=%s error=%s", agent.email, type(exc).__name__)
        finally:
            client.close()

    return Response(
        events(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.post("/agent/contact")
def create_contact():  # type: ignore[no-untyped-def]
    """Create (or find) the contact of an unknown caller and answer its record's URL."""
    agent, _ = current_agent()
    data = request.get_json(silent=True) or request.form
    raw = str(data.get("number") or "")
    try:
        number = phonenumbers.parse(raw, None)
        valid = phonenumbers.is_valid_number(number)
    except phonenumbers.NumberParseException:
        valid = False
    if not valid:
        return jsonify(error="bad_number", reason=f"{raw!r} is not a phone number in E.164"), 400
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    crm = crm_for_lookups()
    client = connect()
    try:
        owner_id = crm.owner_for_email(agent.email, agent.hubspot_owner_id)
        contact, created = ensure_contact(crm, client, e164, owner_id)
        url = record_url(crm, client, get_settings().hubspot_portal_id, contact.id)
    except CrmError as exc:
        log.warning("agent.create_contact_failed agent=%s error=%s", agent.email, exc)
        return jsonify(error="crm_unavailable", reason=f"HubSpot refused or failed: {exc}"), 502
    log.info("agent.contact agent=%s contact=%s created=%s", agent.email, contact.id, created)
    return jsonify(contact_id=contact.id, created=created, url=url), 201 if created else 200
