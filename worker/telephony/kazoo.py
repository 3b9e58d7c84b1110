"""KAZOO (2600Hz) click-to-call: each agent has a click-to-call endpoint whose ``extension``
is their phone; ``connect`` rings it, then the contact.

Source: https://docs.2600hz.com/supported/applications/crossbar/doc/clicktocall/,
"Execute the clicktocall with a supplied number" (``connect``
with ``?contact=``, 202 "non-blocking" answer carrying the originate request) and the
schema (``extension`` is fixed per endpoint, hence one C2C id per agent). Envelope and
errors: KAZOO's crossbar (``api_util:create_resp_envelope``, ``cb_context`` system and
validation errors): ``{"status": "error", "error": "<http code>", "message": ..., "data": ...}``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

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
    sub_object,
)

NAME = "KAZOO"


class KazooClickToCall:
    """``place_call(agent=<the agent's click-to-call id>, destination_e164=...)``.

    ``base_url`` is the crossbar API root, e.g. ``https://kazoo.example.com:8443`` (no
    ``/v2``): KAZOO is self-hosted, there is no default. ``auth_token`` is sent as
    ``X-Auth-Token``; it may be empty only if every agent's endpoint has
    ``auth_required: false``.
    """

    platform = "kazoo"

    def __init__(
        self,
        *,
        base_url: str,
        account_id: str,
        auth_token: str = "",
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        session: requests.Session | None = None,
    ):
        if not account_id:
            raise ValueError("KAZOO: account_id is empty")
        self.base_url = base_url.rstrip("/")
        self.account_id = account_id
        self.auth_token = auth_token
        self.http = PlatformHttp(NAME, timeouts=timeouts, session=session)

    def place_call(self, agent: str, destination_e164: str) -> PlacedCall:
        e164 = parse_destination(destination_e164, NAME)
        c2c_id = (agent or "").strip()
        if not c2c_id:
            raise ClickToCallError(
                "No KAZOO click-to-call endpoint is set for you in callhook; ask your "
                "administrator.",
                code="no_agent",
            )
        url = (
            f"{self.base_url}/v2/accounts/{quote(self.account_id, safe='')}"
            f"/clicktocall/{quote(c2c_id, safe='')}/connect"
        )
        # Neither "+E.164" nor bare digits: KAZOO percent-encodes the contact before
        # normalizing it (cb_clicktocall:get_c2c_contact), so "+33…" becomes "%2B33…" and
        # is dialled as such, while bare digits meet the default e164_converters' NANP rule
        # first ("3225551212", Brussels, would become +13225551212). The international
        # prefix "00" is turned into "+" by those converters for every country.
        contact = "00" + e164[1:]
        response = self.http.request(
            "POST",
            url,
            params={"contact": contact},
            # Crossbar's request envelope; the contact itself goes in the query, as the
            # documentation shows (crossbar's req_value reads either).
            json={"data": {}},
            headers=self._headers(),
        )
        envelope = json_object(response)
        if 200 <= response.status_code < 300 and envelope.get("status") != "error":
            data = sub_object(envelope, "data")
            call_id = data.get("outbound_call_id") or data.get("call_id")
            # Crossbar echoes the auth token in every envelope: it stays out of `raw`.
            raw = {k: v for k, v in envelope.items() if k not in ("auth_token", "tokens")}
            return PlacedCall(self.platform, str(call_id) if call_id else None, raw)
        raise self._error(response, envelope, c2c_id)

    def close(self) -> None:
        self.http.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.auth_token:  # empty for endpoints created with "auth_required": false
            headers["X-Auth-Token"] = self.auth_token
        return headers

    def _error(
        self, response: requests.Response, envelope: dict[str, Any], c2c_id: str
    ) -> ClickToCallError:
        status = response.status_code
        secrets = [self.auth_token]
        message = short_text(envelope.get("message"), secrets)
        code = message.replace(" ", "_") if message else None
        if status == 401:
            return ClickToCallError(
                "KAZOO refused callhook's auth token (it may have expired); an administrator "
                "must renew it.",
                status=status,
                code=code or "invalid_credentials",
            )
        if status == 403:
            return ClickToCallError(
                "KAZOO does not let callhook's token use click-to-call in this account; an "
                "administrator must check the token's account.",
                status=status,
                code=code or "forbidden",
            )
        if status == 404:
            return ClickToCallError(
                f"KAZOO has no click-to-call endpoint {short_text(c2c_id, secrets)} in this "
                "account; check the KAZOO click-to-call id set for you in callhook.",
                status=status,
                code=code or "bad_identifier",
            )
        if status == 400 and "whitelist" in message.lower():
            return ClickToCallError(
                "Your KAZOO click-to-call endpoint is not allowed to dial this number (its "
                "whitelist); an administrator must widen it.",
                status=status,
                code="whitelist",
            )
        if status == 400:
            return ClickToCallError(
                f"KAZOO rejected the call request: {_details(envelope, secrets) or message}.",
                status=status,
                code=code or "validation",
            )
        return http_error(
            NAME,
            response,
            f"KAZOO could not place the call (HTTP {status}"
            + (f": {message})." if message else ")."),
            code=code,
        )


def _details(envelope: dict[str, Any], secrets: list[str]) -> str:
    """Crossbar's validation errors, ``{"field": {"rule": {"message": ...}}}``, as text."""
    data = envelope.get("data")
    if not isinstance(data, dict):
        return ""
    parts = []
    for field, rules in data.items():
        if isinstance(rules, dict):
            for rule in rules.values():
                text = rule.get("message") if isinstance(rule, dict) else rule
                parts.append(f"{field}: {text}")
    return short_text("; ".join(parts), secrets)
