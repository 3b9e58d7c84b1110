"""Kwebbl Realtime API click-to-call: ``POST /calls`` from the agent to the customer.

Source: Kwebbl Realtime API (PDF, rev. 17), "Perform Realtime Call Actions / Placing a
new call" (body,
202 Accepted with no body, error object ``{status_code, error_code, message}``, errors
400 validation / 401 invalid_grant / 403 access_denied) and "Basics" (host
``realtime.api.kwebbl.net``, base URL ``/v100/``, a custom host for white-label clients).

The access token comes from ``token_provider``: OAuth storage and refresh live elsewhere.
A 401 asks it once for a fresh token (``force_refresh=True``) and the call is sent once
more; the 401 means Kwebbl refused the first request, so nothing rang.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import requests

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
)

NAME = "Kwebbl"
DEFAULT_BASE_URL = "https://realtime.api.kwebbl.net/v100"
# The agent-object patterns of the documentation's "Receiving events" tables.
EXTENSION_ID = re.compile(r"[a-f0-9]{32}")
NUMBER = re.compile(r"\+?\d{3,15}")


class TokenProvider(Protocol):
    """Returns a current access token; ``force_refresh`` after Kwebbl refused the last one.

    May raise ``ClickToCallError`` (e.g. "reconnect Kwebbl") when it has no token to give.
    """

    def __call__(self, *, force_refresh: bool = False) -> str: ...


class KwebblClickToCall:
    """``place_call(agent=<extension_id (32 hex) or internal number>, destination_e164=...)``."""

    platform = "kwebbl"

    def __init__(
        self,
        *,
        token_provider: TokenProvider,
        base_url: str = DEFAULT_BASE_URL,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        session: requests.Session | None = None,
    ):
        self.token_provider = token_provider
        self.url = base_url.rstrip("/") + "/calls"
        self.http = PlatformHttp(NAME, timeouts=timeouts, session=session)

    def place_call(self, agent: str, destination_e164: str) -> PlacedCall:
        e164 = parse_destination(destination_e164, NAME)
        # E.164 with "+", as in the documentation's own POST /calls example ("+31203080700").
        body = {"from": self._from(agent), "to": {"number": e164}}
        tokens = [self.token_provider()]
        response = self._post(body, tokens[-1])
        if response.status_code == 401:
            tokens.append(self.token_provider(force_refresh=True))
            response = self._post(body, tokens[-1])
        if 200 <= response.status_code < 300:
            # 202 Accepted, no body: Kwebbl returns no call id. The call's `created`
            # event (from/to) is how it is found later.
            return PlacedCall(self.platform, None, json_object(response))
        raise self._error(response, tokens)

    def close(self) -> None:
        self.http.close()

    def _from(self, agent: str) -> dict[str, str]:
        ident = (agent or "").strip()
        if EXTENSION_ID.fullmatch(ident.lower()):
            return {"extension_id": ident.lower()}
        if NUMBER.fullmatch(ident):
            return {"number": ident}  # a string: internal numbers may start with 0 ("010")
        raise ClickToCallError(
            "Your Kwebbl extension in callhook is missing or malformed (expected an extension "
            "id or an internal number); ask your administrator.",
            code="no_agent",
        )

    def _post(self, body: dict[str, Any], token: str) -> requests.Response:
        return self.http.request(
            "POST",
            self.url,
            json=body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def _error(self, response: requests.Response, tokens: list[str]) -> ClickToCallError:
        status = response.status_code
        payload = json_object(response)  # "may contain" the error object, says Kwebbl
        code = payload.get("error_code") if isinstance(payload.get("error_code"), str) else None
        said = short_text(payload.get("message"), tokens)
        if status == 401:
            return ClickToCallError(
                "Kwebbl no longer accepts callhook's authorization; an administrator must "
                "reconnect Kwebbl in callhook.",
                status=status,
                code=code or "invalid_grant",
            )
        if status == 403:
            return ClickToCallError(
                "Kwebbl does not let callhook place this call: the connected Kwebbl user "
                "needs the calls.create permission, or, with calls.create.personal, can only "
                "call from their own extension.",
                status=status,
                code=code or "access_denied",
            )
        if status == 400:
            return ClickToCallError(
                "Kwebbl rejected the call"
                + (f": {said}." if said else ".")
                + " Check that your Kwebbl extension in callhook is right; Kwebbl never "
                "connects two external numbers.",
                status=status,
                code=code or "validation",
            )
        # The documented "503 - Access Denied" is read as a typo for 403: a 503 stays transient.
        return http_error(
            NAME,
            response,
            f"Kwebbl could not place the call (HTTP {status}" + (f": {said})." if said else ")."),
            code=code,
        )
