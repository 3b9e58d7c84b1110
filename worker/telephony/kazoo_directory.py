"""KAZOO's users and their devices, for agent discovery.

Sources, 2600Hz's crossbar documentation:

- Users (https://docs.2600hz.com/supported/applications/crossbar/doc/users/), "Fetch":
  ``GET /v2/accounts/{ACCOUNT_ID}/users``, summaries with ``id``, ``email``,
  ``first_name``, ``last_name``, ``username``, ``priv_level``;
- Devices (https://docs.2600hz.com/supported/applications/crossbar/doc/devices/), "Fetch
  the device summary": ``GET /v2/accounts/{ACCOUNT_ID}/devices``, summaries with ``id``,
  ``name``, ``owner_id``, ``username`` (the SIP username), ``enabled``;
- Basics (https://docs.2600hz.com/supported/applications/crossbar/doc/basics/),
  "Pagination": ``page_size`` and the opaque ``next_start_key``, sent back as
  ``start_key``.

agents.yaml names a KAZOO agent by the ``owner_id`` of the device that rang, i.e. the
user's ``id``; the devices are shown beside it so a person can recognise the phone.
Crossbar echoes the auth token in every envelope: only the fields above are read.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import quote

from worker.core.redaction import short_text
from worker.core.settings import Settings
from worker.telephony.base import (
    ClickToCallError,
    PlatformHttp,
    Timeouts,
    http_error,
    json_object,
)
from worker.telephony.kazoo import NAME
from worker.telephony.users import MAX_PAGES, PlatformUser, listed_email, listed_text

PAGE_SIZE = 100


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def configured(settings: Settings) -> bool:
    """The click-to-call registry's condition: the crossbar URL and the account."""
    return bool(settings.kazoo_api_url and settings.kazoo_account_id)


class _Crossbar:
    """One account's listings, page by page, with the token kept out of every message."""

    def __init__(self, settings: Settings, timeouts: Timeouts):
        self.root = (
            f"{settings.kazoo_api_url.rstrip('/')}/v2/accounts/"
            f"{quote(settings.kazoo_account_id, safe='')}"
        )
        self.token = _secret(settings.kazoo_auth_token)
        self.http = PlatformHttp(NAME, timeouts=timeouts)
        self.truncated = False

    def list(self, what: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        start: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"page_size": PAGE_SIZE}
            if start:
                params["start_key"] = start
            headers = {"Accept": "application/json"}
            if self.token:
                headers["X-Auth-Token"] = self.token
            response = self.http.request(
                "GET", f"{self.root}/{what}", params=params, headers=headers
            )
            envelope = self._envelope(response, what)
            rows.extend(r for r in envelope.get("data") or [] if isinstance(r, dict))
            start = envelope.get("next_start_key")
            if not isinstance(start, str) or not start:
                return rows
        self.truncated = True
        return rows

    def _envelope(self, response: Any, what: str) -> dict[str, Any]:
        status = response.status_code
        envelope = json_object(response)
        if status == 401:
            raise ClickToCallError(
                "KAZOO refused callhook's auth token (it may have expired); an administrator "
                "must renew KAZOO_AUTH_TOKEN.",
                status=status,
                code="invalid_credentials",
            )
        if status == 403:
            raise ClickToCallError(
                f"KAZOO does not let callhook's token read this account's {what}.",
                status=status,
                code="forbidden",
            )
        if not 200 <= status < 300 or envelope.get("status") == "error":
            said = short_text(envelope.get("message"), [self.token])
            raise http_error(
                NAME,
                response,
                f"KAZOO could not list {what} (HTTP {status}" + (f": {said})." if said else ")."),
            )
        if not isinstance(envelope.get("data"), list):
            raise ClickToCallError(
                f"KAZOO answered the {what} list in a form callhook cannot read."
            )
        return envelope

    def close(self) -> None:
        self.http.close()


def _text(value: Any) -> str:
    return listed_text(value, numbers=False)  # KAZOO's ids and names are strings


def list_users(settings: Settings, timeouts: Timeouts) -> tuple[list[PlatformUser], bool]:
    """Every user of the account, with the SIP usernames of the devices they own."""
    crossbar = _Crossbar(settings, timeouts)
    try:
        users = crossbar.list("users")
        devices = crossbar.list("devices")
    finally:
        crossbar.close()
    owned: dict[str, list[str]] = defaultdict(list)
    for device in devices:
        owner, label = (
            _text(device.get("owner_id")),
            _text(device.get("username") or device.get("name")),
        )
        if owner and label:
            owned[owner].append(label)
    found = []
    for user in users:
        user_id = _text(user.get("id"))
        if not user_id:
            continue
        email = _text(user.get("email")) or _text(user.get("username"))
        phones = owned.get(user_id, [])
        found.append(
            PlatformUser(
                platform="kazoo",
                ident=user_id,
                name=" ".join(
                    p for p in (_text(user.get("first_name")), _text(user.get("last_name"))) if p
                ),
                email=listed_email(email),
                detail=("devices: " + ", ".join(sorted(phones))) if phones else "no device",
                enabled=user.get("enabled") is not False,
            )
        )
    return found, crossbar.truncated
