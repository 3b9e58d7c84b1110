"""Kwebbl's user extensions, for agent discovery.

Source: Kwebbl Realtime API (PDF, rev. 17), "Access Informational Resources / List of
Extensions": ``GET /extensions`` with scopes ``company.users`` (users) and
``company.dialplans`` (dialplans); 200 with a JSON array of extension objects ``{id (32
hex), name ("for type user concatenation of first and last name"), number, type (user |
dialplan), external_number}``; errors 401 ``invalid_grant`` and 403 ``access_denied``.

Kwebbl gives no email: users are matched to HubSpot owners by name only. Dialplans are not
people and are left out. The token is the click-to-call client's (the OAuth connection of
``worker.telephony.kwebbl_oauth``, else ``KWEBBL_ACCESS_TOKEN``), refreshed once after a
401 as the client does; the connection needs the ``company.users`` scope.
"""

from __future__ import annotations

from typing import Any

from worker.core.redaction import short_text
from worker.core.settings import Settings
from worker.telephony.base import (
    ClickToCallError,
    PlatformHttp,
    Timeouts,
    http_error,
    json_object,
)
from worker.telephony.kwebbl import DEFAULT_BASE_URL, EXTENSION_ID, NAME, TokenProvider
from worker.telephony.users import PlatformUser


def _client(settings: Settings) -> Any:
    """The click-to-call client the registry builds (it decides which token to use)."""
    from worker.telephony.registry import BUILDERS

    return BUILDERS["kwebbl"](settings)


def configured(settings: Settings) -> bool:
    return _client(settings) is not None


def list_users(settings: Settings, timeouts: Timeouts) -> tuple[list[PlatformUser], bool]:
    """Every user extension of the company (the endpoint is not paginated)."""
    client = _client(settings)
    if client is None:
        raise ClickToCallError("Kwebbl is not connected.", code="not_configured")
    tokens: TokenProvider = client.token_provider
    url = (settings.kwebbl_api_base_url or DEFAULT_BASE_URL).rstrip("/") + "/extensions"
    http = PlatformHttp(NAME, timeouts=timeouts)
    try:
        used = [tokens()]
        response = _get(http, url, used[-1])
        if response.status_code == 401:
            used.append(tokens(force_refresh=True))
            response = _get(http, url, used[-1])
    finally:
        http.close()
    rows = _rows(response, used)
    return [_user(row) for row in rows if _is_user(row)], False


def _get(http: PlatformHttp, url: str, token: str) -> Any:
    return http.request(
        "GET", url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )


def _rows(response: Any, tokens: list[str]) -> list[Any]:
    status = response.status_code
    if status == 401:
        raise ClickToCallError(
            "Kwebbl no longer accepts callhook's authorization; an administrator must "
            "reconnect Kwebbl in callhook.",
            status=status,
            code="invalid_grant",
        )
    if status == 403:
        raise ClickToCallError(
            "Kwebbl does not let callhook list users: the connection needs the company.users "
            "scope (add it to KWEBBL_SCOPES and connect Kwebbl again).",
            status=status,
            code="access_denied",
        )
    if not 200 <= status < 300:
        said = short_text(json_object(response).get("message"), tokens)
        raise http_error(
            NAME,
            response,
            f"Kwebbl could not list extensions (HTTP {status}" + (f": {said})." if said else ")."),
        )
    try:
        rows = response.json()
    except ValueError:
        rows = None
    if not isinstance(rows, list):
        raise ClickToCallError("Kwebbl answered the extension list in a form callhook cannot read.")
    return rows


def _is_user(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and row.get("type") == "user"
        and isinstance(row.get("id"), str)
        and EXTENSION_ID.fullmatch(row["id"].lower()) is not None
    )


def _user(row: dict[str, Any]) -> PlatformUser:
    number = row.get("number")
    name = row.get("name")
    return PlatformUser(
        platform="kwebbl",
        ident=row["id"].lower(),
        name=" ".join(name.split()) if isinstance(name, str) else "",
        detail=f"number {number}" if isinstance(number, str | int) else "",
    )
