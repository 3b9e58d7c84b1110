"""UIS Call API click-to-call: JSON-RPC 2.0 ``start.employee_call``, the employee first.

Source: UIS Call API
(https://www.uiscom.ru/academiya/spravochnyj-centr/dokumentatsiya-api/call_api/,
English: https://callgear.github.io/call_api/), "Fields common for all methods", "Error
messages" (error
object with ``data.mnemonic``), "Groups of error codes", "List of errors common for all
methods", "Limits and restrictions" and "Meta parameters" (``limits.*_reset`` in seconds).
A partial copy lacked its URLs and the method's parameters; they come from the vendor's full Call
API document (the Russian original, "Вызов на сотрудника"): base URL
``https://callapi.uiscom.ru/v4.0``; params ``access_token``, ``first_call``,
``virtual_phone_number`` (required, E.164 digits, shown to the customer), ``contact`` (E.164
digits, e.g. ``79091234567``), ``employee: {id (number, required), phone_number}``; result
``{"data": {"call_session_id": 237859081}, "metadata": {...}}``; and that method's errors
(``employee_not_found``, ``no_active_phone_number``, ``virtual_phone_number_not_found``, ...).
The employee is identified by ``id`` only: the method takes no login.

``limit_exceeded`` costs nothing (points are only charged for successful requests) and
placed nothing, so it is retried once after the reset UIS reports, if that wait is short.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from worker.core.numbers import valid_number
from worker.core.redaction import short_text
from worker.telephony.base import (
    DEFAULT_TIMEOUTS,
    ClickToCallError,
    PlacedCall,
    PlatformHttp,
    Timeouts,
    http_error,
    json_object,
    parse_destination,
    sub_object,
)

NAME = "UIS"
DEFAULT_BASE_URL = "https://callapi.uiscom.ru/v4.0"
METHOD = "start.employee_call"
MAX_LIMIT_WAIT_S = 10.0

_ADMIN = "; an administrator must fix it in UIS"
# mnemonic → (what the agent reads, may the same request succeed later?)
MNEMONICS: dict[str, tuple[str, bool]] = {
    "access_token_expired": ("UIS says callhook's Call API key has expired" + _ADMIN, False),
    "access_token_blocked": ("UIS says callhook's Call API key is blocked" + _ADMIN, False),
    "access_token_invalid": ("UIS does not recognise callhook's Call API key" + _ADMIN, False),
    "auth_error": ("UIS refused callhook's login" + _ADMIN, False),
    "ip_not_whitelisted": (
        "UIS refuses requests from callhook's server address: an administrator must add it "
        "to the Call API IP whitelist in UIS",
        False,
    ),
    "forbidden": (
        "The UIS user behind callhook's key may not start calls (Call API access)" + _ADMIN,
        False,
    ),
    "component_disabled": (
        "The UIS account has the 'Call API Basic set' component disabled" + _ADMIN,
        False,
    ),
    "account_inactive": (
        "The UIS account is disabled; an administrator must contact UIS support",
        False,
    ),
    "employee_not_found": (
        "UIS does not know employee {employee}; check the UIS employee id set for you in callhook",
        False,
    ),
    "no_active_phone_number": (
        "Your UIS employee profile has no active phone number; activate one in UIS",
        False,
    ),
    "virtual_phone_number_not_found": (
        "The caller number callhook uses for UIS ({virtual}) is not one of the account's "
        "virtual numbers; an administrator must fix callhook's UIS settings",
        False,
    ),
    "own_virtual_phone_number_not_allowed": (
        "That number is one of your own UIS virtual numbers and cannot be called",
        False,
    ),
    "contact_in_blacklist": ("This number is on the UIS blacklist", False),
    "internal_error": (
        "UIS had an internal error; if it persists, an administrator must contact UIS support",
        False,
    ),
}
# Error-code groups ("Groups of error codes"), for mnemonics the table above does not know.
CODE_GROUPS: dict[int, str] = {
    -32001: "UIS refused callhook's Call API key" + _ADMIN,
    -32002: "UIS security rules forbid calling this number (international calls are off by "
    "default), or it is blacklisted" + _ADMIN,
    -32003: "UIS denies callhook access to the Call API" + _ADMIN,
    -32007: "UIS refused the caller number callhook uses" + _ADMIN,
    -32008: "A UIS component callhook needs is disabled" + _ADMIN,
    -32009: "The UIS account is not active; an administrator must contact UIS support",
}
# Requests UIS could not read: a bug in callhook, not something an agent can fix.
PROTOCOL_CODES = {-32700, -32600, -32601, -32099}


class UisClickToCall:
    """``place_call(agent=<UIS employee id, e.g. "25">, destination_e164=...)``.

    ``virtual_phone_number`` is the account's virtual number UIS shows to the customer
    (required by the method), with or without "+". ``sleep`` is how the client waits out a
    short ``limit_exceeded`` (tests pass a recorder).
    """

    platform = "uis"

    def __init__(
        self,
        *,
        access_token: str,
        virtual_phone_number: str,
        base_url: str = DEFAULT_BASE_URL,
        max_limit_wait_s: float = MAX_LIMIT_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        session: requests.Session | None = None,
    ):
        if not access_token:
            raise ValueError("UIS: access_token is empty")
        self.access_token = access_token
        self.virtual_phone_number = _e164_digits(virtual_phone_number)
        self.url = base_url.rstrip("/")
        self.max_limit_wait_s = max_limit_wait_s
        self.sleep = sleep
        self.http = PlatformHttp(NAME, timeouts=timeouts, session=session)

    def place_call(self, agent: str, destination_e164: str) -> PlacedCall:
        e164 = parse_destination(destination_e164, NAME)
        employee = (agent or "").strip()
        if not employee.isdigit():
            raise ClickToCallError(
                "Your UIS employee id in callhook is missing or not a number; ask your "
                "administrator.",
                code="no_agent",
            )
        params = {
            "access_token": self.access_token,
            "first_call": "employee",  # ring the agent first, as every click-to-call does
            "virtual_phone_number": self.virtual_phone_number,
            "contact": e164[1:],  # E.164 digits without "+", as the method's doc writes it
            "employee": {"id": int(employee)},
        }
        envelope = self._call(params)
        error = envelope.get("error")
        if isinstance(error, dict) and _mnemonic(error) == "limit_exceeded":
            wait = _limit_reset(error, envelope)
            if wait is None or wait > self.max_limit_wait_s:
                raise self._limit_error(error, wait)
            self.sleep(wait)
            envelope = self._call(params)
            error = envelope.get("error")
            if isinstance(error, dict) and _mnemonic(error) == "limit_exceeded":
                raise self._limit_error(error, _limit_reset(error, envelope))
        if isinstance(error, dict):
            raise self._error(error, employee)
        result = envelope.get("result")
        data = result.get("data") if isinstance(result, dict) else None
        session_id = data.get("call_session_id") if isinstance(data, dict) else None
        if session_id is None:
            raise ClickToCallError(
                "UIS gave an answer callhook could not read. The call may still ring: check "
                "your phone before trying again.",
                code="outcome_unknown",
            )
        return PlacedCall(
            self.platform, str(session_id), result if isinstance(result, dict) else {}
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, params: dict[str, Any]) -> dict[str, Any]:
        request = {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": METHOD, "params": params}
        response = self.http.request(
            "POST",
            self.url,
            json=request,
            headers={"Content-Type": "application/json; charset=UTF-8"},
        )
        envelope = json_object(response)
        # JSON-RPC errors arrive with HTTP 200; anything else is the web server's doing.
        if not 200 <= response.status_code < 300 or not envelope:
            raise http_error(
                NAME,
                response,
                f"UIS could not place the call (HTTP {response.status_code}).",
            )
        return envelope

    def _limit_error(self, error: dict[str, Any], wait: float | None) -> ClickToCallError:
        kind = _params(error).get("limit_type")
        per = f" per {short_text(kind)}" if isinstance(kind, str) and kind else ""
        when = f"; try again in {wait:.0f} s" if wait is not None else "; try again later"
        return ClickToCallError(
            f"callhook has used up its UIS Call API allowance{per}{when}.",
            code="limit_exceeded",
            retry_after=wait,
            retryable=True,
        )

    def _error(self, error: dict[str, Any], employee: str) -> ClickToCallError:
        mnemonic = _mnemonic(error)
        code = error.get("code") if isinstance(error.get("code"), int) else None
        secrets = [self.access_token]
        if mnemonic in MNEMONICS:
            text, retryable = MNEMONICS[mnemonic]
            message = text.format(employee=employee, virtual="+" + self.virtual_phone_number)
        elif code in PROTOCOL_CODES or code == -32602:
            data = sub_object(error, "data")
            field = data.get("field")  # never `value`: it echoes what was sent, the key too
            about = f" (parameter {short_text(field, secrets)})" if field else ""
            message = (
                f"UIS rejected callhook's request{about}: "
                f"{short_text(error.get('message'), secrets) or mnemonic}; this is a callhook "
                "problem, tell your administrator"
            )
            retryable = False
        elif code in CODE_GROUPS:
            message, retryable = CODE_GROUPS[code], False
        else:
            said = short_text(error.get("message"), secrets)
            message = f"UIS refused the call: {said or mnemonic or 'unknown error'}"
            retryable = False
        return ClickToCallError(
            message + ".", code=mnemonic or (str(code) if code else None), retryable=retryable
        )


def _e164_digits(number: str) -> str:
    text = (number or "").strip()
    digits = text[1:] if text.startswith("+") else text
    if not digits.isdigit() or valid_number("+" + digits, None) is None:
        raise ValueError("UIS: virtual_phone_number is not an E.164 number")
    return digits


def _mnemonic(error: dict[str, Any]) -> str | None:
    data = error.get("data")
    mnemonic = data.get("mnemonic") if isinstance(data, dict) else None
    return mnemonic if isinstance(mnemonic, str) else None


def _params(error: dict[str, Any]) -> dict[str, Any]:
    data = error.get("data")
    params = data.get("params") if isinstance(data, dict) else None
    return params if isinstance(params, dict) else {}


def _limit_reset(error: dict[str, Any], envelope: dict[str, Any]) -> float | None:
    """Seconds until the exhausted limit resets, from the reply's metadata.

    UIS's Call API documentation says meta parameters come with errors too, without saying
    where. UIS's Data
    API (same platform) puts them in ``error.data.metadata``; the top level is accepted too.
    """
    data = sub_object(error, "data")
    metadata = data.get("metadata") or error.get("metadata") or envelope.get("metadata")
    limits = metadata.get("limits") if isinstance(metadata, dict) else None
    if not isinstance(limits, dict):
        return None
    kind = _params(error).get("limit_type")
    if kind not in ("minute", "day"):
        kind = "day" if _number(limits.get("day_remaining")) == 0 else "minute"
    reset = _number(limits.get(f"{kind}_reset"))
    return max(0.0, reset) if reset is not None else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
