"""Kavkom's extensions, for agent discovery.

Source: Kavkom API documentation (https://help.kavkom.com/en/api-integration/kavkom-api/),
"Managing calls - PBX API / List extensions": ``GET /api/pbx/v1/extension/list`` with
``domain_uuid`` in the query string (a GET, "Authentication"), ``limit`` (1 to 5000) and
``page``; ``with_user=1`` includes the linked user. The answer is the PBX envelope
``{"data": [...], "success": true, "message": ...}``; each row has ``extension``,
``enabled`` ("true"/"false") and, among the documented sort columns, ``description`` and
``outbound_caller_id_name``. The page gives no total: a short page is the last.

A row also carries the extension's SIP ``password``: it is never read here. The linked
user's fields are not documented, so an email is taken from it only when it plainly has
one (``email`` or ``user_email``). The name to match is the ``description`` (what the
Kavkom admin typed for the person), else the linked user's name.
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
    sub_object,
)
from worker.telephony.kavkom import DEFAULT_BASE_URL, NAME
from worker.telephony.users import MAX_PAGES, PlatformUser, listed_email, listed_text

LIST_PATH = "/api/pbx/v1/extension/list"
PAGE_SIZE = 500


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def configured(settings: Settings) -> bool:
    """The click-to-call registry's condition: a token and the domain it works on."""
    return bool(_secret(settings.kavkom_api_token) and settings.kavkom_domain_uuid)


def list_users(settings: Settings, timeouts: Timeouts) -> tuple[list[PlatformUser], bool]:
    """Every extension of the domain, and whether the listing stopped at MAX_PAGES."""
    token = _secret(settings.kavkom_api_token)
    url = (settings.kavkom_api_base_url or DEFAULT_BASE_URL).rstrip("/") + LIST_PATH
    http = PlatformHttp(NAME, timeouts=timeouts)
    users: list[PlatformUser] = []
    try:
        for page in range(1, MAX_PAGES + 1):
            response = http.request(
                "GET",
                url,
                params={
                    "domain_uuid": settings.kavkom_domain_uuid,
                    "limit": PAGE_SIZE,
                    "page": page,
                    "with_user": 1,
                },
                headers={"X-API-TOKEN": token, "Accept": "application/json"},
            )
            rows = _rows(response, token)
            users.extend(
                _user(row) for row in rows if isinstance(row, dict) and row.get("extension")
            )
            if len(rows) < PAGE_SIZE:
                return users, False
        return users, True
    finally:
        http.close()


def _rows(response: Any, token: str) -> list[Any]:
    status = response.status_code
    payload = json_object(response)
    if status in (401, 403):
        raise ClickToCallError(
            "Kavkom refused callhook's API token for the extension list: in Kavkom's API "
            "Settings, the token needs the extension list route and this domain.",
            status=status,
            code="auth",
        )
    if not 200 <= status < 300 or payload.get("error"):
        said = short_text(payload.get("message"), [token])
        raise http_error(
            NAME,
            response,
            f"Kavkom could not list extensions (HTTP {status}" + (f": {said})." if said else ")."),
        )
    rows = payload.get("data")
    if not isinstance(rows, list):
        raise ClickToCallError("Kavkom answered the extension list in a form callhook cannot read.")
    return rows


def _user(row: dict[str, Any]) -> PlatformUser:
    linked = sub_object(row, "user")
    email = listed_text(linked.get("email") or linked.get("user_email"))
    name = listed_text(row.get("description")) or listed_text(
        linked.get("name") or linked.get("username")
    )
    caller_name = listed_text(row.get("outbound_caller_id_name"))
    extension = listed_text(row.get("extension"))
    return PlatformUser(
        platform="kavkom",
        ident=extension,
        name=name,
        email=listed_email(email),
        detail=f"extension {extension}",
        other_names=(caller_name,) if caller_name and caller_name != name else (),
        enabled=str(row.get("enabled", "true")).lower() != "false",
    )
