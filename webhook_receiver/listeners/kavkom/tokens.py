"""Kavkom's access tokens: asking for one, and reading when it expires.

Kavkom's documentation ("Access tokens for the WebSocket"): ``POST <live>/api/auth/
acquire-access`` with ``Authorization: Bearer <refresh-token>`` and ``{"extensions": [...],
"scope": "calls", "application": ...}`` answers ``{"token", "expiresAt"}``; the token is
short-lived. ``userUuid`` appears in the example; callhook has no setting for it, so it is
sent only when given (the refresh token already belongs to a user). ``verify-access``
could extend a token, but its request and answer are not documented; a new token from
``acquire-access`` is used instead.

A failure is classified here, once: `RefreshTokenRefused` (retrying soon will not help)
or `AccessUnavailable` (it may pass), so the token keeper knows how long to wait.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from webhook_receiver.listeners.kavkom.endpoints import ACQUIRE_PATH
from webhook_receiver.listeners.kavkom.logs import log, redactor, server_text
from worker.telephony.base import TransportFailure, send


class RefreshTokenRefused(Exception):
    """Kavkom will not issue tokens for this refresh token; retrying soon will not help."""


class AccessUnavailable(Exception):
    """acquire-access failed for a reason that may pass (network, 5xx, 429)."""


@dataclass
class AccessToken:
    value: str = field(repr=False)
    expires_at: float | None  # Unix seconds; None when Kavkom gave no usable expiresAt
    generation: int
    obtained_at: float
    refused: bool = False


def parse_expiry(value: Any) -> float | None:
    """``expiresAt`` as Unix seconds. Kavkom's docs say "<ISO-date>"; epochs are read too."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e12 else float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:  # a zone-less date from Kavkom is taken as UTC
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return None


def _clock_skew(date_header: str | None) -> float:
    """Our clock minus the server's (from its ``Date`` header), when it is off by over 2 s.

    ``expiresAt`` is on Kavkom's clock; a dyno whose clock runs ahead would otherwise see
    every token as already expired and renew it over and over.
    """
    if not date_header:
        return 0.0
    try:
        # The header has whole seconds: the server's time was up to 1 s later than it says.
        # Taking the latest makes the expiry, if anything, a second early, never late.
        server_now = email.utils.parsedate_to_datetime(date_header).timestamp() + 1.0
    except (TypeError, ValueError):
        return 0.0
    skew = time.time() - server_now
    return skew if abs(skew) > 2 else 0.0


def _extension_values(extensions: Iterable[str]) -> list[int | str]:
    # the documentation's example sends extensions as numbers ([1001]); keep text for anything else.
    return [int(e) if e.isdigit() else e for e in extensions]


@dataclass(frozen=True)
class TokenRequest:
    """What acquire-access is asked with: the listener's settings, fixed at start."""

    http: requests.Session
    api_url: str
    refresh_token: str = field(repr=False)
    extensions: list[str]
    application: str
    user_uuid: str | None
    timeouts: tuple[float, float]
    default_lifetime_s: float  # only for the warning when no expiry is readable

    def acquire(self) -> tuple[str, float | None]:
        """POST acquire-access (in a thread): (token, expiry) or a classified failure."""
        body: dict[str, Any] = {
            "extensions": _extension_values(self.extensions),
            "scope": "calls",
            "application": self.application,
        }
        if self.user_uuid:
            body["userUuid"] = self.user_uuid
        try:
            response = send(
                self.http,
                "POST",
                self.api_url + ACQUIRE_PATH,
                timeouts=self.timeouts,
                json=body,
                headers={
                    "Authorization": f"Bearer {self.refresh_token}",
                    "Accept": "application/json",
                },
            )
        except TransportFailure as exc:
            raise AccessUnavailable(f"acquire-access unreachable ({exc.error})") from None
        status = response.status_code
        text = server_text(response.content, [self.refresh_token])
        if status in (401, 403):
            raise RefreshTokenRefused(
                f"refresh token refused (HTTP {status}{': ' + text if text else ''}): "
                "set KAVKOM_REFRESH_TOKEN to a valid Kavkom refresh token"
            )
        if status in (400, 404, 422):
            raise RefreshTokenRefused(
                f"acquire-access refused the request (HTTP {status}"
                f"{': ' + text if text else ''}): check KAVKOM_LISTEN_EXTENSIONS and "
                "KAVKOM_LIVE_URL"
            )
        if status != 200 and status != 201:
            raise AccessUnavailable(f"acquire-access answered HTTP {status}")
        try:
            payload = response.json()
        except ValueError:
            payload = None
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise AccessUnavailable("acquire-access answered without a token")
        redactor.secrets.add(token)
        expires_at = parse_expiry(payload.get("expiresAt"))
        if expires_at is not None:
            expires_at += _clock_skew(response.headers.get("Date"))
        if expires_at is None:
            log.warning(
                "listener.kavkom.token_expiry_unknown: no readable expiresAt; renewing every "
                "%.0f s",
                self.default_lifetime_s,
            )
        elif expires_at <= time.time():
            log.warning("listener.kavkom.token_expiry_past: expiresAt is already past (clock?)")
        return token, expires_at
