"""The agent page: ``/agent`` shows the caller's card while the phone rings.

The page keeps a Server-Sent Events stream (``/agent/stream``) open on the agent's
Redis stream (see ``worker.pops``). Every web process can serve any agent: the
stream id is the SSE event id, so the page's reconnect resumes with ``Last-Event-ID``
wherever it lands. A comment line every ``HEARTBEAT_S`` keeps the connection alive
through routers that cut idle ones (Heroku: 55 s).

The agent's token travels in the ``X-Callhook-Agent`` header, never in a URL: URLs end
up in access logs, browser history and Referer headers, where a token would be a
standing invitation to place calls. Agents receive ``/agent?k=TOKEN`` (that link keeps
working); the page then removes ``k`` from the address bar, keeps the token in the
browser's storage, and sends it as a header on its own requests. The stream is read with
``fetch()`` (``static/agent_client.js``): EventSource cannot send headers. ``?k=`` is
still read by the endpoints, for the first page load and for pages opened before this
change, but the pages never put it in a URL.

Links expire (``worker.agent_links``). An open page asks ``POST /agent/token`` at load and
then at least daily; past half its lifetime the token is swapped for a fresh one, so a
page in daily use never meets its expiry.

Each open page holds one gunicorn thread (gthread workers). So that pages can never take
the threads webhooks need, a process serves at most WEB_THREADS - WEBHOOK_THREADS
streams; past that a page gets 503 with Retry-After and its script reconnects later
(possibly to another process). Size WEB_CONCURRENCY * (WEB_THREADS - WEBHOOK_THREADS)
above the number of agents online. And so that one agent (or one leaked link) cannot
take them all, one agent holds at most AGENT_STREAMS_PER_AGENT of them in a process;
past that their new page gets 429. A closed page frees its slot at the stream's next
write (a heartbeat at most), hence the Retry-After of a heartbeat and a bit.

Every response here says ``Cache-Control: no-store``: they carry or accept a token, and
a shared cache or the browser's disk must keep none of them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NoReturn

import phonenumbers
import redis
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
)

from worker.agent_links import holder, refusal, renew, renewable_in
from worker.agents import Agent
from worker.contacts import ensure_contact
from worker.crm.base import CrmError
from worker.crm.factory import crm_for_lookups
from worker.dialing import MAX_REQUESTED_CHARS, DialPolicy, DialRefused, dial, display
from worker.models import utcnow
from worker.platforms.base import ClickToCallError
from worker.pops import record_url, stream_key
from worker.redis_conn import connect, redis_url
from worker.settings import get_settings

bp = Blueprint("agent", __name__)
log = logging.getLogger("callhook.agent")

HEARTBEAT_S = 15
REPLAY_DEPTH = 100
TOKEN_HEADER = "X-Callhook-Agent"
# A closed page's slot is free by the stream's next heartbeat.
AGENT_FULL_RETRY_S = HEARTBEAT_S + 5
_streams_lock = threading.Lock()
_streams_open = 0
_streams_by_agent: Counter[str] = Counter()


@bp.after_request
def _no_store(response: Response) -> Response:
    """Nothing a token opens (or a page holding one) is kept by any cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _take_stream_slot(email: str) -> str | None:
    """Take one of this process's agent-stream slots for `email`: None when taken, else
    why not ("agent": this agent holds their share already; "process": all are taken)."""
    global _streams_open
    settings = get_settings()
    cap = max(1, settings.web_threads - settings.webhook_threads)
    with _streams_lock:
        if _streams_by_agent[email] >= settings.agent_streams_per_agent:
            return "agent"
        if _streams_open >= cap:
            return "process"
        _streams_open += 1
        _streams_by_agent[email] += 1
        return None


def _release_stream_slot(email: str) -> None:
    global _streams_open
    with _streams_lock:
        _streams_open -= 1
        _streams_by_agent[email] -= 1
        if _streams_by_agent[email] <= 0:
            del _streams_by_agent[email]


def open_streams(email: str) -> int:
    """How many streams `email` holds open in this process."""
    with _streams_lock:
        return _streams_by_agent.get(email.lower(), 0)


def _refuse(status: int, error: str, reason: str, retry_after: int | None = None) -> NoReturn:
    """Stop the request with a JSON {error, reason} answer."""
    response = make_response(jsonify(error=error, reason=reason), status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    abort(response)


def _token(header_only: bool = False) -> str:
    token = request.headers.get(TOKEN_HEADER, "")
    if not token and not header_only:
        token = request.args.get("k", "")
    return token


def _agent_for(token: str) -> Agent:
    """The agent a token belongs to, else 403 with the reason (expired, revoked, ...)."""
    found = holder(token) if token else None
    if found is None:
        why = refusal(token) if token else None
        abort(403, description=why or "no agent link: open your personal callhook link")
    agent = current_app.extensions["callhook.mappings"].agents.by_email(found.email)
    if agent is None:
        abort(403, description=f"{found.email} is no longer in agents.yaml")
    return agent


def current_agent() -> tuple[Agent, str]:
    """The agent whose link this request carries (the X-Callhook-Agent header, or ``?k=``
    from a link), else 403 with the reason."""
    token = _token()
    return _agent_for(token), token


def _field(name: str, max_chars: int | None = None) -> str:
    """One text field of a JSON object (or form) body, else 400 saying what is wrong."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            _refuse(400, "bad_body", f'send a JSON object, e.g. {{"{name}": "+33612345678"}}')
    else:
        data = request.form
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        _refuse(400, "bad_field", f'{name!r} must be a string, e.g. "+33612345678"')
    if max_chars is not None and len(value) > max_chars:
        _refuse(400, "too_long", f"{name!r} is {len(value)} characters long; at most {max_chars}")
    return value.strip()


@bp.get("/agent")
def page():  # type: ignore[no-untyped-def]
    """The page. With a valid link (``?k=``, what agents receive): for its agent, and the
    page keeps the token. Without one, the page loads and uses the token this browser kept
    (a reload or a bookmark: the page removed ``?k=`` from its address). With an expired,
    revoked or forged link: 403, a page that says why and to ask for a new link (it does
    not fall back to a kept token: whoever opened this link may not be that agent)."""
    token = _token()
    if not token:
        return render_template("agent.html", agent=None, token="", problem="")
    why = refusal(token)
    agent = None
    if why is None:
        found = holder(token)
        directory = current_app.extensions["callhook.mappings"].agents
        agent = directory.by_email(found.email) if found else None
        if agent is None:
            why = "this agent is no longer in agents.yaml; ask your admin"
    if why is not None:
        return render_template("agent.html", agent=None, token="", problem=why), 403
    return render_template("agent.html", agent=agent, token=token, problem="")


@bp.post("/agent/token")
def token_renewal():  # type: ignore[no-untyped-def]
    """The page's token, renewed once half its lifetime has passed (`agent_links.renew`).

    Authenticated by the X-Callhook-Agent header only: a token in this URL would be logged.
    Answers the token to use from now on (the same one while it is young), its expiry,
    when to ask again, and who it belongs to; 403 with the reason when it is expired or
    revoked (the reason tells the agent to ask for a new link).
    """
    token = _token(header_only=True)
    agent = _agent_for(token)
    renewed = renew(token)
    if renewed is None:  # expired between the two reads
        abort(403, description=refusal(token) or "this agent link is no longer valid")
    fresh, found = renewed
    if fresh != token:
        log.info("agent.token_renewed agent=%s link=%s", agent.email, found.link_id)
    return jsonify(
        token=fresh,
        expires_at=found.expires_at.isoformat(),
        renew_in_s=int(renewable_in(found).total_seconds()),
        agent={"email": agent.email, "name": agent.name or agent.email,
               "auto_open": agent.auto_open},
    )  # fmt: skip


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
    email = str(agent.email).lower()
    full = _take_stream_slot(email)
    if full == "agent":
        log.warning("agent.streams_per_agent_full agent=%s", email)
        cap = get_settings().agent_streams_per_agent
        _refuse(
            429, "too_many_pages",
            f"you have {cap} callhook pages open on this server already, the most allowed: "
            "close one (this page retries by itself)",
            AGENT_FULL_RETRY_S,
        )  # fmt: skip
    if full == "process":
        log.warning("agent.streams_full agent=%s", email)
        _refuse(503, "busy", "too many open agent pages here; retrying", 5)
    key = stream_key(email)
    last = (request.headers.get("Last-Event-ID") or request.args.get("last") or "")[:64] or None
    # Its own connection: a blocking read must outlive the usual short socket timeout.
    client = redis.Redis.from_url(
        redis_url(), socket_timeout=HEARTBEAT_S + 10, socket_connect_timeout=5,
        decode_responses=True,
    )  # fmt: skip

    def events() -> Iterator[str]:
        try:
            first, position = replay(client, key, last)
            yield f"retry: 3000\n: connected as {email}\n\n"
            yield from first
            while True:
                found = client.xread({key: position}, block=HEARTBEAT_S * 1000, count=50)
                if not found:
                    why = refusal(token)
                    if why is not None:  # revoked or expired while open: close the stream
                        yield f"event: revoked\ndata: {json.dumps({'reason': why})}\n\n"
                        return
                    yield ": heartbeat\n\n"
                    continue
                for entry_id, fields in found[0][1]:
                    position = entry_id
                    yield _sse(entry_id, fields["card"])
        except redis.RedisError as exc:
            # The page reconnects by itself and resumes from its last event id.
            log.warning("agent.stream_lost agent=%s error=%s", email, type(exc).__name__)
        finally:
            client.close()

    response = Response(
        events(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    # Released when the server closes the response, streamed or not (a client gone before
    # the first byte never runs the generator, so its `finally` cannot be relied on).
    response.call_on_close(lambda: _release_stream_slot(email))
    return response


@bp.post("/agent/contact")
def create_contact():  # type: ignore[no-untyped-def]
    """Create (or find) the contact of an unknown caller and answer its record's URL."""
    agent, _ = current_agent()
    raw = _field("number", MAX_REQUESTED_CHARS)
    e164 = parse_number(raw, get_settings().default_region)
    if e164 is None:
        return jsonify(error="bad_number", reason=f"{raw[:32]!r} is not a phone number"), 400
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
    """Click-to-call: ring the agent's phone, then the number (through their platform).

    The number policy, the agent's rate limit and the dial record are `worker.dialing`'s.
    """
    agent, _ = current_agent()
    requested = _field("to")
    try:
        dialled = dial(agent, requested, get_settings())
    except DialRefused as refused:
        body: dict[str, Any] = {"error": refused.code, "reason": refused.reason}
        if refused.retry_after is not None:
            body["retry_after"] = refused.retry_after
        response = jsonify(body)
        if refused.retry_after is not None:
            response.headers["Retry-After"] = str(refused.retry_after)
        return response, refused.status
    except ClickToCallError as exc:
        log.info("agent.call_refused agent=%s code=%s", agent.email, exc.code)
        status = 409 if exc.code == "not_configured" else 502
        body = {"error": exc.code or "refused", "reason": exc.message}
        if exc.retry_after:
            body["retry_after"] = exc.retry_after
        return jsonify(body), status
    log.info(
        "agent.call agent=%s platform=%s call=%s", agent.email, dialled.platform, dialled.call_id
    )
    return jsonify(
        status="ringing",
        platform=dialled.platform,
        call_id=dialled.call_id,
        message=f"Your phone rings first; pick up to be connected to "
        f"{display(dialled.destination)}.",
    ), 202


@bp.get("/call")
def call_link():  # type: ignore[no-untyped-def]
    """A link a CRM can hold (`/call?to=+33…`): a page that asks before dialling.

    A GET never places a call by itself (link previews and prefetchers follow links);
    the page posts to /agent/call with the agent's token (from the URL or this browser).
    The number policy is checked here too, so the agent never confirms a call that
    /agent/call would refuse.
    """
    raw = request.args.get("to", "")
    try:
        e164 = DialPolicy.from_settings(get_settings()).check(raw)
    except DialRefused as refused:
        _refuse(400, refused.code, refused.reason)
    return render_template(
        "call.html", number=e164, token=request.args.get("k", "")[:200], display=display(e164)
    )
