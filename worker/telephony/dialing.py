"""Click-to-call policy: which numbers an agent's link may dial, how often, and the record.

Why: an agent's personal link places real calls on the company's telephony account. A
link that leaks (a forwarded mail, a shared screen, a browser's history) would otherwise
be a toll-fraud tool: its holder could make the PBX ring premium-rate numbers, or
satellite and far-away numbers whose operators share what the call costs with their
owner (international revenue share fraud), as fast as the platform accepts requests.
So, before any request reaches a platform, every dial goes through `dial`:

1. **Number type** (``phonenumbers.number_type``) must be in ``DIAL_ALLOWED_TYPES``.
   Default: fixed line, mobile, VoIP and toll-free. VoIP ranges are billed like fixed
   lines where they exist (France's 09 numbers, the UK's 056) and sales teams call them
   every day; toll-free numbers cost the caller nothing, so they are no use for fraud,
   and a prospect's switchboard is often one. `NEVER_TYPES` (premium rate, shared cost,
   UAN, personal numbers, pagers, and numbers phonenumbers cannot classify) can never be
   allowed: start-up refuses a setting that names them.
2. **Country** (``phonenumbers.region_code_for_number``) must be in
   ``DIAL_ALLOWED_COUNTRIES`` (empty: DEFAULT_REGION's country only; ``*``: any
   country). Non-geographic numbers (region "001": satellite +870/+881, international
   networks +882/+883, international premium +979 and freephone +800) are never dialled,
   not even with ``*``: they are the classic destinations of that fraud.
3. **Rate**: at most ``DIAL_MAX_PER_MINUTE`` and ``DIAL_MAX_PER_HOUR`` calls per agent,
   counted in Redis so that every web process shares the count (see `take_dial_slot`).
   A refusal answers 429 with Retry-After.

Every attempt, placed or not, is a row of ``dial_attempts`` (`worker.core.models.DialAttempt`),
listed by ``callhook dials list``: an operator sees what a link was used for, including
the refused numbers that show a leaked link being tried. The row is written before the
platform is asked, so a call is never placed without its record.

Checked here, in the one place every click-to-call goes through, rather than in each
platform client: the clients keep their own E.164 check (`base.parse_destination`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import phonenumbers
import redis

from worker.core import numbers, sliding_window
from worker.core.agents import Agent
from worker.core.db import session_scope
from worker.core.dial_rules import (
    ANY_COUNTRY,
    NON_GEOGRAPHIC,
    TYPE_LABELS,
    TYPE_NAMES,
    listed,
    normalise_allowed_countries,
    normalise_allowed_types,
)
from worker.core.models import DialAttempt
from worker.core.numbers import display, valid_number
from worker.core.redis_conn import connect
from worker.core.settings import Settings
from worker.core.sliding_window import Window
from worker.telephony.base import ClickToCallError
from worker.telephony.registry import click_to_call_for

log = logging.getLogger("callhook.dialing")

PLACED = "placed"
REFUSED = "refused"
RATE_LIMITED = "rate_limited"
FAILED = "failed"
RESULTS = (PLACED, REFUSED, RATE_LIMITED, FAILED)

# What an agent may type: a number in any human format fits; more is not a number.
MAX_REQUESTED_CHARS = 64


class DialRefused(Exception):
    """Why callhook itself did not place a call: the agent reads ``reason``.

    ``code`` is the JSON ``error``; ``status`` the HTTP status (400 for a number the
    policy refuses, 429 past the rate limit, 503 when the limit cannot be checked).
    """

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        status: int = 400,
        retry_after: int | None = None,
        destination: str | None = None,
    ):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.destination = destination  # E.164, when the number parsed


@dataclass(frozen=True)
class DialPolicy:
    """The number policy from the settings; `check` answers E.164 or raises DialRefused."""

    types: frozenset[int]
    regions: frozenset[str] | None  # None: any country
    default_region: str

    @classmethod
    def from_settings(cls, settings: Settings) -> DialPolicy:
        # Normalised again: the settings' defaults are not run through their validators.
        types = normalise_allowed_types(settings.dial_allowed_types)
        countries = normalise_allowed_countries(settings.dial_allowed_countries)
        return cls(
            types=frozenset(TYPE_NAMES[name] for name in types.split(",")),
            regions=(
                None
                if countries == ANY_COUNTRY
                else frozenset(listed(countries) or [settings.default_region])
            ),
            default_region=settings.default_region,
        )

    def check(self, raw: str) -> str:
        """The number as E.164 when click-to-call may dial it ("06 12…" reads in
        DEFAULT_REGION), else DialRefused saying why in words the agent can act on."""
        shown = raw[:32]
        if len(raw) > MAX_REQUESTED_CHARS:
            raise DialRefused(
                "too_long",
                f"{shown!r}… is {len(raw)} characters long: not a phone number "
                f"(at most {MAX_REQUESTED_CHARS})",
            )
        number = valid_number(raw, self.default_region)
        if number is None:
            raise DialRefused("bad_number", f"{shown!r} is not a phone number")
        e164 = numbers.e164(number)
        region = phonenumbers.region_code_for_number(number)
        if region == NON_GEOGRAPHIC or region is None:
            raise DialRefused(
                "number_not_allowed",
                f"{display(e164)} is a satellite or international network number: "
                "click-to-call never dials those.",
                destination=e164,
            )
        if self.regions is not None and region not in self.regions:
            allowed = ", ".join(sorted(self.regions))
            raise DialRefused(
                "number_not_allowed",
                f"{display(e164)} is a number in {region}; click-to-call dials numbers in "
                f"{allowed} only (ask your admin).",
                destination=e164,
            )
        kind = phonenumbers.number_type(number)
        if kind not in self.types:
            label = TYPE_LABELS.get(kind, "a number of unknown type")
            raise DialRefused(
                "number_not_allowed",
                f"{display(e164)} is {label}; click-to-call does not dial those here "
                "(ask your admin).",
                destination=e164,
            )
        return e164


# -- the rate limit ---------------------------------------------------------------------
WINDOWS_S = (60, 3600)


def rate_keys(email: str) -> list[str]:
    """The Redis keys of an agent's dial windows (a minute, an hour)."""
    return [f"callhook:dial:{email.lower()}:{window}s" for window in WINDOWS_S]


def take_dial_slot(client: redis.Redis, email: str, settings: Settings) -> tuple[int, int] | None:
    """Take one dial for `email` in both windows; None when taken, else (seconds to wait,
    the window in seconds whose limit was reached).

    A sliding log per agent and window (worker/core/sliding_window.py), shared by every web
    process: concurrent requests cannot both take the last slot, twice the limit never
    gets through across a window's boundary, and the wait is exact (the Retry-After).
    Its size is bounded by the limits (60 entries an hour by default). All or nothing: a
    refused dial takes no slot, so pressing Call again does not extend the wait.
    """
    limits = (settings.dial_max_per_minute, settings.dial_max_per_hour)
    windows = [
        Window(key, limit, window)
        for key, limit, window in zip(rate_keys(email), limits, WINDOWS_S, strict=True)
    ]
    full = sliding_window.take(client, windows)
    if full is None:
        return None
    return math.ceil(full.wait_s), int(full.window.window_s)


# -- the record -------------------------------------------------------------------------
def record(
    email: str,
    requested: str,
    result: str,
    *,
    destination: str | None = None,
    platform: str | None = None,
    reason: str | None = None,
    platform_call_id: str | None = None,
) -> int:
    """One row of dial_attempts; returns its id."""
    with session_scope() as session:
        row = DialAttempt(
            agent_email=email.lower(),
            requested=requested[:MAX_REQUESTED_CHARS],
            destination=destination,
            platform=platform,
            result=result,
            reason=reason,
            platform_call_id=(platform_call_id or None) and platform_call_id[:200],
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def _finish(row_id: int, result: str, reason: str | None, call_id: str | None) -> None:
    with session_scope() as session:
        row = session.get(DialAttempt, row_id)
        if row is None:
            return
        row.result = result
        row.reason = reason
        row.platform_call_id = (call_id or None) and call_id[:200]
        session.add(row)


@dataclass(frozen=True)
class Dialled:
    """A call the platform accepted."""

    platform: str
    call_id: str | None
    destination: str


def dial(agent: Agent, requested: str, settings: Settings) -> Dialled:
    """Check the number and the agent's rate, record the attempt, then ask the platform.

    Raises DialRefused when callhook refuses (nothing reached a platform), and the
    platform's ClickToCallError when the platform refused or failed; both are recorded.
    """
    email = str(agent.email)
    try:
        e164 = DialPolicy.from_settings(settings).check(requested)
    except DialRefused as refused:
        record(email, requested, REFUSED, destination=refused.destination, reason=refused.reason)
        log.warning("dial.refused agent=%s code=%s", email, refused.code)
        raise
    try:
        platform, client, ident = click_to_call_for(agent, settings)
    except ClickToCallError as exc:
        record(email, requested, FAILED, destination=e164, reason=exc.message)
        raise
    try:
        waiting = take_dial_slot(connect(), email, settings)
    except redis.RedisError as exc:
        # Fail closed: without the count, a leaked link would have no limit at all.
        reason = "callhook cannot check its call limits right now; try again in a moment."
        record(email, requested, REFUSED, destination=e164, platform=platform, reason=reason)
        log.warning("dial.limit_unavailable agent=%s error=%s", email, type(exc).__name__)
        raise DialRefused("limit_unavailable", reason, status=503, retry_after=5) from exc
    if waiting is not None:
        seconds, window = waiting
        limit, per = (
            (settings.dial_max_per_minute, "minute")
            if window == WINDOWS_S[0]
            else (settings.dial_max_per_hour, "hour")
        )
        reason = (
            f"Too many calls: callhook places at most {limit} calls per {per} for you; "
            f"try again in {seconds} s."
        )
        record(email, requested, RATE_LIMITED, destination=e164, platform=platform, reason=reason)
        log.warning("dial.rate_limited agent=%s wait_s=%s", email, seconds)
        raise DialRefused("rate_limited", reason, status=429, retry_after=seconds)
    # Recorded before the platform hears of it: a call is never placed without its row.
    row_id = record(
        email, requested, FAILED, destination=e164, platform=platform,
        reason="sent to the platform; its answer was not recorded",
    )  # fmt: skip
    try:
        placed = client.place_call(ident, e164)
    except ClickToCallError as exc:
        _finish(row_id, FAILED, exc.message, None)
        raise
    _finish(row_id, PLACED, None, placed.call_id)
    return Dialled(platform=platform, call_id=placed.call_id, destination=e164)
