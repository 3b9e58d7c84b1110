"""UIS employees, for agent discovery: the Data API's ``get.employees``.

Source: UIS Data API documentation
(https://www.uiscom.ru/academiya/spravochnyj-centr/dokumentatsiya-api/data_api/), method
``get.employees`` ("Сотрудники"): JSON-RPC 2.0 at ``https://dataapi.uiscom.ru/v2.0``,
params ``access_token``, ``limit``, ``offset`` and ``fields``; the result is
``{"data": [...], "metadata": {...}}``, each employee with ``id``, ``full_name``,
``first_name``, ``last_name``, ``email`` and ``extension`` (an object whose
``extension_phone_number`` is the internal number). Errors are JSON-RPC error objects
answered with HTTP 200, as in the Call API (``worker.telephony.uis``).

The Data API is a separate endpoint from the Call API callhook dials through; the same
UIS API key is used, and it must be allowed to read employees (UIS: the key's Data API
permissions). agents.yaml names a UIS agent by the employee ``id``.
"""

from __future__ import annotations

import uuid
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
from worker.telephony.uis import NAME
from worker.telephony.users import MAX_PAGES, PlatformUser, listed_email, listed_text

METHOD = "get.employees"
FIELDS = ["id", "full_name", "first_name", "last_name", "email", "extension"]
PAGE_SIZE = 1000


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def configured(settings: Settings) -> bool:
    """Listing needs only the API key (placing calls also needs the virtual number)."""
    return bool(_secret(settings.uis_access_token))


def data_api_url(settings: Settings) -> str:
    return settings.uis_data_api_url.rstrip("/")


def list_users(settings: Settings, timeouts: Timeouts) -> tuple[list[PlatformUser], bool]:
    """Every employee of the account, and whether the listing stopped at MAX_PAGES."""
    token = _secret(settings.uis_access_token)
    http = PlatformHttp(NAME, timeouts=timeouts)
    users: list[PlatformUser] = []
    try:
        for page in range(MAX_PAGES):
            params = {"access_token": token, "limit": PAGE_SIZE, "offset": page * PAGE_SIZE,
                      "fields": FIELDS}  # fmt: skip
            request = {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": METHOD, "params": params}
            response = http.request(
                "POST", data_api_url(settings), json=request,
                headers={"Content-Type": "application/json; charset=UTF-8"},
            )  # fmt: skip
            rows = _rows(response, token)
            users.extend(
                _user(row) for row in rows if isinstance(row, dict) and row.get("id") is not None
            )
            if len(rows) < PAGE_SIZE:
                return users, False
        return users, True
    finally:
        http.close()


def _rows(response: Any, token: str) -> list[Any]:
    envelope = json_object(response)
    if not 200 <= response.status_code < 300 or not envelope:
        raise http_error(
            NAME, response, f"UIS could not list employees (HTTP {response.status_code})."
        )
    error = envelope.get("error")
    if isinstance(error, dict):
        data = sub_object(error, "data")
        mnemonic = data.get("mnemonic") if isinstance(data.get("mnemonic"), str) else ""
        said = short_text(error.get("message"), [token])
        raise ClickToCallError(
            f"UIS refused {METHOD}: {said or 'no reason given'}"
            + (f" ({short_text(mnemonic)})" if mnemonic else "")
            + ". The UIS API key needs Data API access to employees.",
            code=mnemonic or None,
        )
    result = envelope.get("result")
    rows = result.get("data") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise ClickToCallError("UIS answered get.employees in a form callhook cannot read.")
    return rows


def _user(row: dict[str, Any]) -> PlatformUser:
    extension = sub_object(row, "extension")
    number = listed_text(extension.get("extension_phone_number"))
    first_last = " ".join(
        p for p in (listed_text(row.get("first_name")), listed_text(row.get("last_name"))) if p
    )
    full = listed_text(row.get("full_name")) or first_last
    email = listed_text(row.get("email"))
    return PlatformUser(
        platform="uis",
        ident=listed_text(row.get("id")),
        name=full,
        email=listed_email(email),
        detail=f"extension {number}" if number else "no extension",
        other_names=(first_last,) if first_last and first_last != full else (),
    )
