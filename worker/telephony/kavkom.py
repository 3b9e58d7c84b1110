"""Kavkom click-to-call: the PBX rings the agent's extension, then bridges it to the customer.

Source: Kavkom API documentation
(https://help.kavkom.com/en/api-integration/kavkom-api/), "Start a call, or click-to-call"
(request and response),
"Authentication" (``X-API-TOKEN``, ``domain_uuid`` in the JSON body of a POST) and
"Error codes & troubleshooting" (the PBX error envelope, 422 "src invalid", 422 "-ERR ...").
"""

from __future__ import annotations

import uuid
from typing import Any

import requests

from worker.core.redaction import short_text
from worker.telephony.base import (
    ClickToCallError,
    PlacedCall,
    PlatformHttp,
    Timeouts,
    http_error,
    json_object,
    parse_destination,
)

NAME = "Kavkom"
DEFAULT_BASE_URL = "https://api.kavkom.com"
CALL_PATH = "/api/pbx/v1/active_call/call"
# The switch's own verdict on the agent's leg ("-ERR NO_ANSWER", ...) comes back as a 422 of
# this very request, and a success already carries the recording's "+OK": the PBX answers
# once the agent's phone has answered or given up. So the read timeout outlasts a ringing
# phone (FreeSWITCH's originate timeout defaults to 60 s).
DEFAULT_TIMEOUTS: Timeouts = (5.0, 75.0)

# FreeSWITCH hangup causes the switch may put after "-ERR", in an agent's words.
SWITCH_CAUSES = {
    "USER_NOT_REGISTERED": "your phone or softphone is not connected to Kavkom",
    "SUBSCRIBER_ABSENT": "your phone or softphone is not connected to Kavkom",
    "NO_ANSWER": "your phone did not answer",
    "NO_USER_RESPONSE": "your phone did not answer",
    "USER_BUSY": "your line is busy",
    "CALL_REJECTED": "the call was declined on your phone",
    "ORIGINATOR_CANCEL": "the call was cancelled",
    "UNALLOCATED_NUMBER": "the number could not be routed",
    "NO_ROUTE_DESTINATION": "the number could not be routed",
    "INVALID_NUMBER_FORMAT": "the number could not be routed",
}


class KavkomClickToCall:
    """``place_call(agent=<extension, e.g. "901">, destination_e164="+33612345678")``."""

    platform = "kavkom"

    def __init__(
        self,
        *,
        api_token: str,
        domain_uuid: str,
        base_url: str = DEFAULT_BASE_URL,
        auto_answer: bool = False,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        session: requests.Session | None = None,
    ):
        if not api_token:
            raise ValueError("Kavkom: api_token is empty")
        try:
            uuid.UUID(domain_uuid)
        except (TypeError, ValueError) as exc:
            raise ValueError("Kavkom: domain_uuid must be the domain's UUID") from exc
        self.api_token = api_token
        self.domain_uuid = domain_uuid
        self.url = base_url.rstrip("/") + CALL_PATH
        self.auto_answer = auto_answer
        self.http = PlatformHttp(NAME, timeouts=timeouts, session=session)

    def place_call(self, agent: str, destination_e164: str) -> PlacedCall:
        e164 = parse_destination(destination_e164, NAME)
        extension = (agent or "").strip()
        if not extension:
            raise ClickToCallError(
                "No Kavkom extension is set for you in callhook; ask your administrator.",
                code="no_agent",
            )
        body: dict[str, Any] = {
            "domain_uuid": self.domain_uuid,
            "src": extension,
            # Digits without "+": the form of the documentation's own example ("33612345678") and of
            # every number Kavkom sends (WebSocket and webhook `number`). A "+" is not
            # something its dialplan is documented to route.
            "destination": e164[1:],
        }
        if self.auto_answer:
            body["auto_answer"] = "true"  # a string in the documentation, not a JSON boolean
        response = self.http.request(
            "POST",
            self.url,
            json=body,
            headers={"X-API-TOKEN": self.api_token, "Accept": "application/json"},
        )
        payload = json_object(response)
        accepted = payload.get("success") is not False and not payload.get("error")
        if 200 <= response.status_code < 300 and accepted:
            call_uuid = payload.get("call_uuid")
            return PlacedCall(self.platform, str(call_uuid) if call_uuid else None, payload)
        raise self._error(response, payload, extension)

    def close(self) -> None:
        self.http.close()

    def _error(
        self, response: requests.Response, payload: dict[str, Any], extension: str
    ) -> ClickToCallError:
        status = response.status_code
        said = short_text(payload.get("message"), [self.api_token])
        if status in (401, 403):
            # "Rejected token" in the docs: not authorized for the route, or not linked
            # to this domain_uuid. Nothing the agent can fix.
            return ClickToCallError(
                "Kavkom refused callhook's API token for click-to-call on this domain; an "
                "administrator must check the token's routes and domain in Kavkom.",
                status=status,
                code="auth",
            )
        if said.startswith("-ERR"):
            cause = said[4:].strip().split(" ")[0].upper() or None
            why = SWITCH_CAUSES.get(cause or "", "the switch rejected it")
            return ClickToCallError(
                f"Kavkom did not connect the call: {why}" + (f" ({cause})." if cause else "."),
                status=status,
                code=cause or "switch_rejected",
            )
        if "src invalid" in said.lower():
            return ClickToCallError(
                f"Kavkom does not know extension {extension} on this domain; check the "
                "Kavkom extension set for you in callhook.",
                status=status,
                code="unknown_extension",
            )
        problems = payload.get("validationErrors")
        if isinstance(problems, dict) and problems:
            details = "; ".join(f"{key}: {value}" for key, value in problems.items())
            return ClickToCallError(
                f"Kavkom rejected the call request: {short_text(details, [self.api_token])}",
                status=status,
                code="validation",
            )
        return http_error(
            NAME,
            response,
            f"Kavkom could not place the call (HTTP {status}" + (f": {said})." if said else ")."),
        )
