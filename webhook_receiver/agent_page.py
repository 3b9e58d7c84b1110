"""The agent page: ``/agent`` shows the caller's card while the phone rings.

The page keeps a Server-Sent Events stream (``/agent/stream``) open on the agent's
Redis stream (see ``worker.pops``). Every web process can serve any agent: the
stream id is the SSE event id, so the browser's automatic reconnect resumes with
``Last-Event-ID`` wherever it lands. A comment line every ``HEARTBEAT_S`` keeps the
connection alive through routers that cut idle ones (Heroku: 55 s).

Each open page holds one gunicorn thread (gthread workers). So that pages can never take
the threads webhooks need, a process serves at most WEB_THREADS - WEBHOOK_THREADS
streams; past that a page gets 503 with Retry-After and its script reconnects later
(possibly to another process). Size WEB_CONCURRENCY * (WEB_THREADS - WEBHOOK_THREADS)
above the number of agents online.
"""

from __future__ import annotations

import json
import logging
import threading
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
from worker.platforms.base import ClickToCallError
from worker.platforms.registry import click_to_call_for
from worker.pops import record_url, stream_key
from worker.redis_conn import connect, redis_url
from worker.settings import get_settings

bp = Blueprint("agent", __name__)
log = logging.getLogger("callhook.agent")

HEARTBEAT_S = 15
REPLAY_DEPTH = 100
_streams_lock = threading.Lock()
_streams_open = 0


def _take_stream_slot() -> bool:
    """One of this process's agent-stream slots, if any is free."""
    global _streams_open
    settings = get_settings()
    cap = max(1, settings.web_threads - settings.webhook_threads)
    with _streams_lock:
        if _streams_open >= cap:
            return False
        _streams_open += 1
        return True


def _release_stream_slot() -> None:
    global _streams_open
    with _streams_lock:
        _streams_open -= 1


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
    if not _take_stream_slot():
        log.warning("agent.streams_full agent=%s", agent.email)
        response = jsonify(error="busy", reason="too many open agent pages here; retrying")
        response.headers["Retry-After"] = "5"
        return response, 503
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

    response = Response(
        events(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # Released when the server closes the response, streamed or not (a client gone before
    # the first byte never runs the generator, so its `finally` cannot be relied on).
    response.call_on_close(_release_stream_slot)
    return response


@bp.post("/agent/contact")
def create_contact():  # type: ignore[no-untyped-def]
    """Create (or find) the contact of an unknown caller and answer its record's URL."""
    agent, _ = current_agent()
    data = request.get_json(silent=True) or request.form
    raw = str(data.get("number") or "")
    e164 = parse_number(raw, get_settings().default_region)
    if e164 is None:
        return jsonify(error="bad_number", reason=f"{raw!r} is not a phone number"), 400
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


def parse_number(raw: str, region: str) -> str | None:
    """E.164 for what an agent typed or a CRM link carries ("06 12…" reads in DEFAULT_REGION)."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@bp.post("/agent/call")
def place_call():  # type: ignore[no-untyped-def]
    """Click-to-call: ring the agent's phone, then the number (through their platform)."""
    agent, _ = current_agent()
    data = request.get_json(silent=True) or request.form
    raw = str(data.get("to") or "").strip()
    settings = get_settings()
    e164 = parse_number(raw, settings.default_region)
    if e164 is None:
        return jsonify(error="bad_number", reason=f"{raw!r} is not a phone number"), 400
    try:
        platform, client, ident = click_to_call_for(agent, settings)
        placed = client.place_call(ident, e164)
    except ClickToCallError as exc:
        log.info("agent.call_refused agent=%s code=%s", agent.email, exc.code)
        status = 409 if exc.code == "not_configured" else 502
        body: dict[str, Any] = {"error": exc.code or "refused", "reason": exc.message}
        if exc.retry_after:
            body["retry_after"] = exc.retry_after
        return jsonify(body), status
    log.info("agent.call agent=%s platform=%s call=%s", agent.email, platform, placed.call_id)
    shown = phonenumbers.format_number(
        phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return jsonify(
        status="ringing",
        platform=platform,
        call_id=placed.call_id,
        message=f"Your phone rings first; pick up to be connected to {shown}.",
    ), 202


@bp.get("/call")
def call_link():  # type: ignore[no-untyped-def]
    """A link a CRM can hold (`/call?to=+33…`): a page that asks before dialling.

    A GET never places a call by itself (link previews and prefetchers follow links);
    the page posts to /agent/call with the agent's link, from the URL or this browser.
    """
    raw = request.args.get("to", "")
    e164 = parse_number(raw, get_settings().default_region)
    if e164 is None:
        abort(400, description=f"{raw!r} is not a phone number")
    return render_template(
        "call.html",
        number=e164,
        token=request.args.get("k", ""),
        display=phonenumbers.format_number(
            phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
    )
