"""Kwebbl subscriptions: the registration that makes Kwebbl POST call events to callhook.

Source: Kwebbl Realtime API (PDF, rev. 17), "Subscribing to Realtime Events": ``GET /subscriptions``
(a JSON array), ``POST /subscriptions`` ("200 OK, 201 Created or 202 Accepted. The body
contains the just created subscription"), ``DELETE /subscriptions/{id}`` (``{"ok": true}``);
"It is not possible to modify a specific subscription": cancel it and create a new one.

A subscription has only a ``callback_url``, so callhook's webhook secret travels in it
(``mappings/kwebbl.yaml``: query parameter ``token``, the secret from the first variable
its ``auth.secret_env`` names, which the caller passes in: the worker never reads the
receiver's mapping schema). Anything shown to a person passes
through ``masked`` first; Kwebbl's own messages are redacted of the secret and tokens.

Tokens come from ``kwebbl_oauth``; a 401 asks for a refreshed token once and the request
is sent once more (Kwebbl refused the first, so nothing was created or deleted).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from worker.core.redaction import short_text
from worker.core.settings import Settings, get_settings
from worker.telephony.base import TransportFailure, json_object, new_session, send
from worker.telephony.kwebbl_oauth import OAuthTokens, base_url

TIMEOUTS = (5.0, 15.0)
WEBHOOK_PATH = "/webhooks/kwebbl"
# the documentation's pattern is [a-f0-9]{32}; anything that could leave the path is refused.
_SUBSCRIPTION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class SubscriptionError(Exception):
    """A subscription request that failed, in words an administrator can act on."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Subscription:
    id: str
    event_types: list[str]
    mode: str
    callback_url: str
    agents: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Subscription:
        # Revision 16 renamed `events` to `event_types`, but the list example still says
        # `events`; `mode` defaults to presence ("Optional. Default is presence").
        events = body.get("event_types", body.get("events"))
        return cls(
            id=str(body.get("id", "")),
            event_types=[str(e) for e in events] if isinstance(events, list) else [],
            mode=str(body.get("mode") or "presence"),
            callback_url=str(body.get("callback_url") or body.get("callback url") or ""),
            agents=[a for a in body.get("agents") or [] if isinstance(a, dict)],
        )


def webhook_secret(secret_envs: Sequence[str]) -> str:
    """The secret new subscriptions carry: the first value of the first variable the
    mapping's ``auth.secret_env`` names (several values, comma-separated, and the later
    variables are the secrets being rotated out)."""
    first = secret_envs[0] if secret_envs else ""
    values = [s.strip() for s in os.environ.get(first, "").split(",") if s.strip()]
    return values[0] if values else ""


def callback_url(secret_envs: Sequence[str], settings: Settings | None = None) -> str:
    """``<PUBLIC_BASE_URL>/webhooks/kwebbl?token=<secret>``, or why it cannot be built."""
    settings = settings or get_settings()
    if not settings.public_base_url.strip():
        raise SubscriptionError(
            "PUBLIC_BASE_URL is not set: Kwebbl needs the public HTTPS address of this callhook "
            "(e.g. https://callhook.example.com) to send events to.",
            code="not_configured",
        )
    secret = webhook_secret(secret_envs)
    if not secret:
        name = secret_envs[0] if secret_envs else "the kwebbl mapping's auth.secret_env"
        raise SubscriptionError(
            f"{name} is not set: choose a long random secret, set it on every callhook "
            "process, then subscribe (Kwebbl sends it back in the callback URL).",
            code="not_configured",
        )
    return f"{base_url(settings)}{WEBHOOK_PATH}?{urlencode({'token': secret})}"


def masked(url: str) -> str:
    """The URL with the value of its ``token`` parameter hidden."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, "***" if k == "token" else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


class KwebblSubscriptions:
    """The three calls an administrator needs; one instance per command."""

    def __init__(
        self,
        *,
        secret_envs: Sequence[str] = (),
        token_provider: Callable[..., str] | None = None,
        base_url: str | None = None,
        session: requests.Session | None = None,
    ):
        self.tokens = token_provider or OAuthTokens()
        self.url = (base_url or get_settings().kwebbl_api_base_url).rstrip("/") + "/subscriptions"
        self.session = session or new_session()
        self._hidden: list[str] = [webhook_secret(secret_envs)]

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> KwebblSubscriptions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_all(self) -> list[Subscription]:
        response = self._send("GET", self.url, "list the subscriptions")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise SubscriptionError("Kwebbl's list of subscriptions is not a JSON array.")
        return [Subscription.from_json(item) for item in body if isinstance(item, dict)]

    def create(self, callback: str) -> Subscription:
        self._hidden.append(callback)
        # The documentation's example for "all events for all users": detailed, every event type;
        # `agents` left out, its default being every extension.
        body = {"event_types": ["*"], "mode": "detailed", "callback_url": callback}
        response = self._send("POST", self.url, "create the subscription", json=body)
        created = Subscription.from_json(json_object(response))
        return created if created.id else Subscription("", ["*"], "detailed", callback)

    def cancel(self, subscription_id: str) -> None:
        if not _SUBSCRIPTION_ID.fullmatch(subscription_id):
            raise SubscriptionError(f"{subscription_id[:40]!r} is not a subscription id.")
        url = f"{self.url}/{subscription_id}"
        self._send("DELETE", url, "cancel the subscription", subject=subscription_id)

    # -- HTTP ------------------------------------------------------------------------------
    def _send(
        self, method: str, url: str, what: str, *, subject: str | None = None, **kwargs: Any
    ) -> requests.Response:
        token = self.tokens()
        response = self._request(method, url, token, what, **kwargs)
        if response.status_code == 401:
            token = self.tokens(force_refresh=True)
            response = self._request(method, url, token, what, **kwargs)
        if 200 <= response.status_code < 300:
            return response
        raise self._error(response, what, subject)

    def _request(
        self, method: str, url: str, token: str, what: str, **kwargs: Any
    ) -> requests.Response:
        self._hidden.append(token)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            return send(self.session, method, url, timeouts=TIMEOUTS, headers=headers, **kwargs)
        except TransportFailure as exc:
            if exc.kind == TransportFailure.BAD_URL:
                raise SubscriptionError("KWEBBL_API_BASE_URL is not a valid URL.") from exc
            if exc.kind == TransportFailure.UNREACHABLE:
                raise SubscriptionError(
                    f"callhook could not reach Kwebbl to {what}; try again in a moment."
                ) from exc
            unsure = (
                " It may have been done anyway: run `callhook kwebbl subscriptions` before "
                "trying again."
                if method != "GET"
                else ""
            )
            raise SubscriptionError(f"Kwebbl did not answer in time to {what}.{unsure}") from exc

    def _error(
        self, response: requests.Response, what: str, subject: str | None
    ) -> SubscriptionError:
        status = response.status_code
        payload = json_object(response)
        code = payload.get("error_code") if isinstance(payload.get("error_code"), str) else None
        said = short_text(payload.get("message"), self._hidden)
        detail = f" (HTTP {status}" + (f" {code}" if code else "") + (f": {said})" if said else ")")
        if status == 401:
            message = (
                "Kwebbl refused callhook's access token even after a renewal. An administrator "
                "must connect Kwebbl again (`callhook kwebbl connect-link`)."
            )
        elif status == 403:
            message = (
                "The Kwebbl user who connected callhook may not manage subscriptions: they "
                "need the calls.events scope (an admin user). Connect Kwebbl again as an admin."
            )
        elif status == 404 and subject is not None:
            message = f"Kwebbl has no subscription {subject}."
        elif 300 <= status < 400:
            message = "Kwebbl answered with a redirect: KWEBBL_API_BASE_URL looks wrong."
        else:
            message = f"Kwebbl could not {what}."
        return SubscriptionError(message + detail, status=status, code=code)
