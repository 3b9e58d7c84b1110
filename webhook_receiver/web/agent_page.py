"""The agent page: ``/agent`` shows the caller's card while the phone rings.

The page keeps a Server-Sent Events stream (``/agent/stream``) open on the agent's
Redis stream (see ``worker.tasks.pops``). Every web process can serve any agent: the
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

Links expire (``worker.core.agent_links``). An open page asks ``POST /agent/token`` at load and
then at least daily; past half its lifetime the token is swapped for a fresh one, so a
page in daily use never meets its expiry.

Under gunicorn, an open page holds no thread: its request thread answers the replay, then
hands the connection to the process's stream hub (`agent_streams`: one event-loop thread
and one XREAD over every open page's agent, see there why). A process serves up to
`agent_streams.Hub.capacity` pages that way (10,000); past that a page gets 503 with
Retry-After and its script reconnects later (possibly to another process). Elsewhere
(werkzeug's server in the tests) a page holds its request thread, and a process serves
at most WEB_THREADS - WEBHOOK_THREADS of them, so that pages never take the threads
webhooks need. And so that one agent (or one leaked link) cannot take them all, one agent
holds at most AGENT_STREAMS_PER_AGENT of them in a process; past that their new page
gets 429. A page closed under the hub frees its slot at once; one held by a thread at the
stream's next write (a heartbeat at most), hence the Retry-After of a heartbeat and a bit.

Beside the live cards, the page lists the agent's calls of the day and the missed calls
to call back (``GET /agent/calls``), and takes the agent's outcome and note after a call
(``POST /agent/calls/<id>/wrap-up``), which the worker writes to the call's CRM record:
`worker.reports.agent_calls` holds the rules, read from callhook's own tables.

On shutdown (`SHUTTING_DOWN`, set from gunicorn_conf.py), open streams end within
READ_BLOCK_S: the XREADs block that long at a time, and heartbeats still go every
HEARTBEAT_S.

Every response here says ``Cache-Control: no-store``: they carry or accept a token, and
a shared cache or the browser's disk must keep none of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
from flask.typing import ResponseReturnValue
from sqlmodel import Session

from webhook_receiver.web import agent_streams
from webhook_receiver.web.agent_streams import (
    HEARTBEAT_S,
    PRESENCE_TTL_S,
    READ_BLOCK_S,
    SHUTTING_DOWN,
)
from worker.core.agent_links import holder, refusal, renew, renewable_in
from worker.core.agents import Agent
from worker.core.db import get_engine
from worker.core.models import Call, utcnow
from worker.core.numbers import valid_e164
from worker.core.redis_conn import connect, redis_url
from worker.core.settings import get_settings
from worker.crm.base import CrmError
from worker.crm.contacts import ensure_contact
from worker.crm.factory import crm_for_lookups
from worker.reports import agent_calls
from worker.tasks.pops import push_wrap_up, stream_key
from worker.tasks.publish import enqueue_log_call
from worker.telephony.base import ClickToCallError
from worker.telephony.dialing import MAX_REQUESTED_CHARS, DialPolicy, DialRefused, dial, display

bp = Blueprint("agent", __name__)
log = logging.getLogger("callhook.agent")

# HEARTBEAT_S; READ_BLOCK_S: how long one blocking read of an agent's stream lasts, how
# soon an open stream notices that its process is stopping (`SHUTTING_DOWN`, set when
# this web process is stopping: see agent_streams).
REPLAY_DEPTH = 100
TOKEN_HEADER = "X-Callhook-Agent"
NOT_CONFIGURED = "Click-to-call is not set up for you yet: ask your admin"
# Call ids as routes take them: past the column's range is no call (404), not an overflow.
MAX_CALL_ID = 2**31 - 1
STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
TIME_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")
# A closed page's slot is free by the stream's next heartbeat.
AGENT_FULL_RETRY_S = HEARTBEAT_S + 5
_streams_lock = threading.Lock()
_streams_open = 0  # streams held by a request thread (not under gunicorn)
_streams_handed = 0  # streams handed to this process's hub (agent_streams)
_streams_by_agent: Counter[str] = Counter()


@bp.after_request
def _no_store(response: Response) -> Response:
    """Nothing a token opens (or a page holding one) is kept by any cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _take_stream_slot(email: str, handed: bool) -> str | None:
    """Take one of this process's agent-stream slots for `email` (`handed`: a stream the
    hub serves, else one a request thread holds): None when taken, else why not
    ("agent": this agent holds their share already; "process": all are taken)."""
    global _streams_open, _streams_handed
    settings = get_settings()
    if handed:
        cap = agent_streams.hub().capacity
    else:
        cap = max(1, settings.web_threads - settings.webhook_threads)
    with _streams_lock:
        if _streams_by_agent[email] >= settings.agent_streams_per_agent:
            return "agent"
        if (_streams_handed if handed else _streams_open) >= cap:
            return "process"
        if handed:
            _streams_handed += 1
        else:
            _streams_open += 1
        _streams_by_agent[email] += 1
        return None


def _release_stream_slot(email: str, handed: bool) -> None:
    global _streams_open, _streams_handed
    with _streams_lock:
        if handed:
            _streams_handed -= 1
        else:
            _streams_open -= 1
        _streams_by_agent[email] -= 1
        if _streams_by_agent[email] <= 0:
            del _streams_by_agent[email]


def open_streams(email: str) -> int:
    """How many streams `email` holds open in this process."""
    with _streams_lock:
        return _streams_by_agent.get(email.lower(), 0)


# Open pages, seen from every process: each stream keeps a member in its agent's sorted
# set, scored with when it stops counting unless refreshed (every heartbeat). A page whose
# process died without closing it drops out by itself.
_presence_key = agent_streams.presence_key


def _mark_open(client: redis.Redis, email: str, page_id: str) -> None:
    key = _presence_key(email)
    pipe = client.pipeline()
    pipe.zadd(key, {page_id: time.time() + PRESENCE_TTL_S})
    pipe.zremrangebyscore(key, "-inf", time.time())
    pipe.expire(key, int(PRESENCE_TTL_S) + 1)
    pipe.execute()


def open_pages(email: str) -> int:
    """How many agent pages `email` has open on any web process (the operator's view)."""
    return int(connect().zcount(_presence_key(email), time.time(), "+inf"))


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
    _check_encodable(name, value)
    return value.strip()


def _check_encodable(name: str, value: str) -> None:
    """400 for a string that is not text at all (a lone surrogate, which JSON can carry):
    it can be neither stored nor logged."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _refuse(400, "bad_field", f"{name!r} is not valid text (UTF-8)")


@bp.get("/agent")
def page() -> ResponseReturnValue:
    """The page. With a valid link (``?k=``, what agents receive): for its agent, and the
    page keeps the token. Without one, the page loads and uses the token this browser kept
    (a reload or a bookmark: the page removed ``?k=`` from its address). With an expired,
    revoked or forged link: 403, a page that says why and to ask for a new link (it does
    not fall back to a kept token: whoever opened this link may not be that agent)."""
    token = _token()
    if not token:
        return _page(None, "", "")
    why = refusal(token)
    agent = None
    if why is None:
        found = holder(token)
        directory = current_app.extensions["callhook.mappings"].agents
        agent = directory.by_email(found.email) if found else None
        if agent is None:
            why = "this agent is no longer in agents.yaml; ask your admin"
    if why is not None:
        return _page(None, "", why), 403
    return _page(agent, token, "")


def _outcomes() -> dict[str, str]:
    """The outcomes an agent may choose after a call (mappings/hubspot.yaml), id → name."""
    hubspot = current_app.extensions["callhook.mappings"].hubspot
    return hubspot.call.outcome_choices() if hubspot is not None else {}


def _page(agent: Agent | None, token: str, problem: str) -> str:
    return render_template(
        "agent.html",
        agent=agent,
        token=token,
        problem=problem,
        outcomes=[{"id": k, "label": v} for k, v in _outcomes().items()],
        dry_run=get_settings().dry_run,
        max_note=agent_calls.MAX_NOTE_CHARS,
    )


@bp.post("/agent/token")
def token_renewal() -> ResponseReturnValue:
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
    `client` decodes responses (its entries are text).
    """
    entries: Any
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
def stream() -> ResponseReturnValue:
    agent, token = current_agent()
    email = str(agent.email).lower()
    handed = agent_streams.can_hand_off(request.environ)
    full = _take_stream_slot(email, handed)
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
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if handed:
        return _handed_stream(email, key, token, last, headers)

    # Its own connection: a blocking read must outlive the usual short socket timeout.
    client = redis.Redis.from_url(
        redis_url(), socket_timeout=READ_BLOCK_S + 10, socket_connect_timeout=5,
        decode_responses=True,
    )  # fmt: skip

    def events() -> Iterator[str]:
        page_id = uuid.uuid4().hex
        try:
            first, position = replay(client, key, last)
            _mark_open(client, email, page_id)
            marked = time.monotonic()
            yield _greeting(email)
            yield from first
            wrote = time.monotonic()
            while not SHUTTING_DOWN.is_set():
                if time.monotonic() - marked >= HEARTBEAT_S:
                    _mark_open(client, email, page_id)
                    marked = time.monotonic()
                # redis-py types XREAD's answer loosely; with decode_responses it is text.
                found: Any = client.xread({key: position}, block=READ_BLOCK_S * 1000, count=50)
                if found:
                    for entry_id, fields in found[0][1]:
                        position = entry_id
                        yield _sse(entry_id, fields["card"])
                    wrote = time.monotonic()
                    continue
                if time.monotonic() - wrote < HEARTBEAT_S:
                    continue
                why = refusal(token)
                if why is not None:  # revoked or expired while open: close the stream
                    yield f"event: revoked\ndata: {json.dumps({'reason': why})}\n\n"
                    return
                yield ": heartbeat\n\n"
                wrote = time.monotonic()
        except redis.RedisError as exc:
            # The page reconnects by itself and resumes from its last event id.
            log.warning("agent.stream_lost agent=%s error=%s", email, type(exc).__name__)
        finally:
            with contextlib.suppress(redis.RedisError):
                client.zrem(_presence_key(email), page_id)
            client.close()

    response = Response(events(), mimetype="text/event-stream", headers=headers)
    # Released when the server closes the response, streamed or not (a client gone before
    # the first byte never runs the generator, so its `finally` cannot be relied on).
    response.call_on_close(lambda: _release_stream_slot(email, handed=False))
    return response


def _greeting(email: str) -> str:
    return f"retry: 3000\n: connected as {email}\n\n"


def _handed_stream(
    email: str, key: str, token: str, last: str | None, headers: dict[str, str]
) -> Response:
    """The stream under gunicorn: the replay answered here, the rest by the hub."""
    client = agent_streams.request_client()
    page_id = uuid.uuid4().hex
    if last and not STREAM_ID.match(last):  # not an id this server sent: start afresh
        last = None
    try:
        first, position = replay(client, key, last)
        _mark_open(client, email, page_id)
    except redis.RedisError as exc:
        # As a thread's stream would: an empty answer; the page reconnects by itself.
        log.warning("agent.stream_lost agent=%s error=%s", email, type(exc).__name__)
        _release_stream_slot(email, handed=True)
        return Response(b"", mimetype="text/event-stream", headers=headers)
    return agent_streams.HandOff(
        _greeting(email) + "".join(first), email, key, token, page_id, position,
        lambda: _release_stream_slot(email, handed=True),
        mimetype="text/event-stream", headers=headers,
    )  # fmt: skip


@bp.post("/agent/contact")
def create_contact() -> ResponseReturnValue:
    """Create (or find) the contact of an unknown caller and answer its record's URL."""
    agent, _ = current_agent()
    raw = _field("number", MAX_REQUESTED_CHARS)
    e164 = valid_e164(raw, get_settings().default_region)  # "06 12…" reads in DEFAULT_REGION
    if e164 is None:
        return jsonify(error="bad_number", reason=f"{raw[:32]!r} is not a phone number"), 400
    crm = crm_for_lookups()
    client = connect()
    try:
        owner_id = crm.owner_for_email(agent.email, agent.hubspot_owner_id)
        contact, created = ensure_contact(crm, client, e164, owner_id)
        url = crm.record_url("contact", contact.id)
    except CrmError as exc:
        log.warning("agent.create_contact_failed agent=%s error=%s", agent.email, exc)
        return jsonify(error="crm_unavailable", reason=f"HubSpot refused or failed: {exc}"), 502
    log.info("agent.contact agent=%s contact=%s created=%s", agent.email, contact.id, created)
    # In a dry run nothing reached HubSpot and there is no record to open: the page says so.
    dry_run = get_settings().dry_run
    return jsonify(contact_id=contact.id, created=created, url=url, dry_run=dry_run), (
        201 if created else 200
    )


@bp.post("/agent/call")
def place_call() -> ResponseReturnValue:
    """Click-to-call: ring the agent's phone, then the number (through their platform).

    The number policy, the agent's rate limit and the dial record are `worker.telephony.dialing`'s.
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
        if exc.code == "not_configured":
            # The fix is the admin's (agents.yaml, the platform's API settings), never the
            # agent's: the agent reads whom to ask, the log says what to change.
            log.warning("agent.dial_not_configured agent=%s detail=%s", agent.email, exc.message)
            return jsonify(error="not_configured", reason=NOT_CONFIGURED), 409
        log.info("agent.call_refused agent=%s code=%s", agent.email, exc.code)
        status = 502
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
def call_link() -> ResponseReturnValue:
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


def _text(value: str) -> str:
    """Typed text as a database and HubSpot keep it: control characters other than line
    breaks and tabs dropped (PostgreSQL refuses NUL), else 400 for what is not text at all
    (a lone surrogate, which JSON can carry)."""
    _check_encodable("note", value)
    return "".join(ch for ch in value if ch in "\n\r\t" or unicodedata.category(ch) != "Cc")


def _json_object() -> dict[str, Any]:
    """The request's JSON object body, else 400 saying what to send."""
    data = request.get_json(silent=True) if request.is_json else None
    if not isinstance(data, dict):
        _refuse(400, "bad_body", 'send a JSON object, e.g. {"outcome": "…", "note": "…"}')
    return data


@bp.post(f"/agent/calls/<int(max={MAX_CALL_ID}):call_id>/wrap-up")
def wrap_up(call_id: int) -> ResponseReturnValue:
    """After the call: the agent's outcome and note, written to the call's CRM record.

    JSON ``{"outcome": <an id of mappings/hubspot.yaml's call.agent_outcomes>, "note": …}``
    (either may be left out, not both; a note of at most 5,000 characters). Only the
    agent whose call it was may write it (`agent_calls.may_wrap_up`). Saved on the call
    row, then the call is synced: logged already, its record is updated in place (one
    request); not yet, the wrap-up goes into its creation.
    """
    agent, _ = current_agent()
    data = _json_object()
    outcome, note = data.get("outcome"), data.get("note")
    if outcome is not None and not isinstance(outcome, str):
        _refuse(400, "bad_field", "'outcome' must be a string: one of the outcomes listed")
    if note is not None and not isinstance(note, str):
        _refuse(400, "bad_field", "'note' must be a string")
    note = _text(note or "").replace("\r\n", "\n").strip()
    if len(note) > agent_calls.MAX_NOTE_CHARS:
        _refuse(
            400, "too_long",
            f"the note is {len(note)} characters long; at most {agent_calls.MAX_NOTE_CHARS}",
        )  # fmt: skip
    outcomes = _outcomes()
    if outcome and outcome not in outcomes:
        _refuse(
            400, "bad_outcome",
            f"{outcome[:64]!r} is not an outcome callhook offers; one of: "
            + ", ".join(f"{k} ({v})" for k, v in outcomes.items()),
        )  # fmt: skip
    if not outcome and not note:
        _refuse(400, "empty", "choose an outcome or write a note")
    agents = current_app.extensions["callhook.mappings"].agents
    try:
        saved = agent_calls.save_wrap_up(call_id, agent, agents, outcome, note, outcomes)
    except agent_calls.WrapUpRefused as refused:
        _refuse(refused.status, refused.error, refused.reason)
    log.info("agent.wrap_up agent=%s call=%s changed=%s", agent.email, saved.call_id, saved.changed)
    if saved.changed:
        _sync_soon(saved.call_id)
    return jsonify(
        call_id=saved.call_id,
        wrap_up=saved.wrap_up,
        changed=saved.changed,
        dry_run=get_settings().dry_run,
    )


def _sync_soon(call_id: int) -> None:
    """Ask the worker to sync the call now, and show the wrap-up on its other cards. If
    Redis is down, the call stays `pending` and the outbox sweep syncs it later."""
    try:
        enqueue_log_call(call_id)
    except Exception as exc:  # kombu raises many types for a dead broker
        log.warning("agent.wrap_up_enqueue_failed call=%s error=%s", call_id, type(exc).__name__)
    try:
        with Session(get_engine()) as session:
            call = session.get(Call, call_id)
            if call is not None:
                push_wrap_up(connect(), call, _outcomes(), get_settings().pop_ttl_s)
    except redis.RedisError as exc:
        log.warning("agent.wrap_up_cards_failed call=%s error=%s", call_id, type(exc).__name__)


def _zone(raw: str) -> ZoneInfo:
    """The browser's time zone (an IANA name, e.g. Europe/Paris), else 400."""
    if not raw:
        return ZoneInfo("UTC")
    if len(raw) > 64 or not TIME_ZONE.match(raw):
        _refuse(400, "bad_tz", "'tz' must be a time zone name such as Europe/Paris")
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        _refuse(400, "bad_tz", f"{raw!r} is not a time zone this server knows")


def _day(raw: str, zone: ZoneInfo) -> date:
    """The day asked for (YYYY-MM-DD), today in `zone` by default, else 400."""
    if not raw:
        return datetime.now(zone).date()
    try:
        day = date.fromisoformat(raw[:10]) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 2099:
        _refuse(400, "bad_day", "'day' must be a date such as 2026-03-18")
    return day


@bp.get("/agent/calls")
def calls_of_the_day() -> ResponseReturnValue:
    """The agent's calls of a day and the missed ones still to call back (`agent_calls`).

    ``?day=YYYY-MM-DD&tz=Area/City``: the day as the agent's browser sees it (default:
    today in UTC). Read from callhook's own tables: a page load never asks HubSpot. At
    most 200 calls, newest first (``truncated`` says when there were more).
    """
    agent, _ = current_agent()
    zone = _zone(request.args.get("tz", ""))
    day = _day(request.args.get("day", ""), zone)
    start, end = agent_calls.day_bounds(day, zone)
    agents = current_app.extensions["callhook.mappings"].agents
    view = agent_calls.day_view(agent, agents, start, end, _outcomes())
    return jsonify(day=day.isoformat(), tz=zone.key, **view)
