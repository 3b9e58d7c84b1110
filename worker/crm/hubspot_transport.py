"""HubSpot over HTTP: the one place requests leave callhook, through ``hubspot-api-client``.

Apart from the adapter so the adapter's logic (which contact, which properties, which
batch) never sees the client library: every request takes its slot in the shared budget
(`rate_limit`), is counted (`callhook_hubspot_requests`), noted in the sync's journal
(`request_journal`) and its failure sorted into transient or permanent here, once.

Retries live in the Celery task, never here: the client library is built with
``Retry(0)`` so a failure surfaces at once as a ``TransientCrmError``. Batch answers
(201/200 or a 207 naming each failed input) are read into a `BatchAnswer` keyed by each
input's ``objectWriteTraceId``: HubSpot does not keep the inputs' order.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from hubspot import HubSpot
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from worker.core.metrics import HUBSPOT_REQUESTS
from worker.core.retry_after import retry_after_seconds
from worker.crm import request_journal
from worker.crm.base import CrmError, PermanentCrmError, TransientCrmError
from worker.crm.rate_limit import RateLimiter


@dataclass
class BatchAnswer:
    """What a batch request did, per input (by ``objectWriteTraceId``, never by position).

    `ids`: the record each answered input names; `errors`: HubSpot's words for each input
    it refused (nothing done for that input); an input in neither was not mentioned.
    """

    ids: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class Transport(Protocol):
    def search_contacts(self, body: dict[str, Any]) -> list[dict[str, Any]]: ...
    def search_page(
        self, object_type: str, body: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], str | None]: ...
    def search_calls(self, body: dict[str, Any]) -> list[dict[str, Any]]: ...
    def create_call(self, body: dict[str, Any]) -> str: ...
    def update_call(self, crm_id: str, body: dict[str, Any]) -> None: ...
    def batch_create(self, object_type: str, inputs: list[dict[str, Any]]) -> BatchAnswer: ...
    def batch_update(self, object_type: str, inputs: list[dict[str, Any]]) -> BatchAnswer: ...
    def owner_id_for_email(self, email: str) -> str | None: ...
    def owner_by_id(self, owner_id: str) -> dict[str, Any] | None: ...
    def search_deals(self, body: dict[str, Any]) -> list[dict[str, Any]]: ...
    def associate_call(self, call_id: str, to_type: str, to_id: str, type_id: int) -> None: ...
    def create_task(self, body: dict[str, Any]) -> str: ...
    def update_task(self, task_id: str, body: dict[str, Any]) -> None: ...
    def delete_task(self, task_id: str) -> None: ...
    def create_contact(self, body: dict[str, Any]) -> str: ...
    def account_details(self) -> dict[str, Any]: ...


def _retry_after(headers: Any) -> float | None:
    return retry_after_seconds(headers.get("Retry-After") if headers else None)


def translate_error(exc: Exception) -> CrmError:
    """Sort a client-library exception into transient (retry) or permanent (record)."""
    if isinstance(exc, Urllib3Error | OSError):
        return TransientCrmError(f"HubSpot unreachable: {type(exc).__name__}: {exc}")
    status = getattr(exc, "status", None)
    if not isinstance(status, int):
        return PermanentCrmError(f"unexpected error: {type(exc).__name__}: {exc}")
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
    except ValueError:
        body = {}
    message = body.get("message") or getattr(exc, "reason", "") or ""
    category = body.get("category") or body.get("errorType") or ""
    text = f"HubSpot {status} {category}: {message}".strip()
    headers = getattr(exc, "headers", None)  # hubspot-api-client's ApiException has them
    if status == 429:
        if str(body.get("policyName", "")).upper() == "DAILY":
            return PermanentCrmError(
                text + " (daily limit: retried tomorrow by replay)", status=429
            )
        return TransientCrmError(text, status=429, retry_after=_retry_after(headers))
    if status >= 500 or status == 408:
        return TransientCrmError(text, status=status, retry_after=_retry_after(headers))
    return PermanentCrmError(text, status=status)


def _count_answer(status: int | None) -> None:
    """Count one HubSpot request by its answer (`callhook_hubspot_requests`).

    Every request ClientTransport sends comes back through here once, answered or not;
    requests callhook's own budget held back (`_slot`) never left and are not counted.
    The client library returns a success's body without its code: 2xx says which class.
    """
    if status is None:
        label = "error"
    elif 200 <= status < 300:
        label = "2xx"
    else:
        label = str(status)
    HUBSPOT_REQUESTS.inc(status=label)


ACCOUNT_INFO = "GET /account-info/v3/details"


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class ClientTransport:
    """Sends the bodies with the official client, pointed at ``HUBSPOT_BASE_URL``."""

    def __init__(
        self, token: str, base_url: str, timeout_s: float, limiter: RateLimiter | None = None
    ):
        self.client = HubSpot(access_token=token, host=base_url, retry=Retry(0, redirect=False))
        self.timeout = (min(5.0, timeout_s), timeout_s)
        self.token, self.base_url = token, base_url
        self.limiter = limiter
        self.sent = 0  # requests sent by this transport (bench/ reports requests per call)

    def _slot(self, search: bool) -> None:
        """Wait for the shared budget; past a few seconds, let the task retry later."""
        if self.limiter is None:
            return
        # The per-second search slot first: the 10 s slot is taken last, just before the
        # request leaves, so its recorded time is the time HubSpot counts it.
        wait = self.limiter.take(("search", "requests") if search else ("requests",))
        if wait is not None:
            raise TransientCrmError(
                f"callhook's HubSpot budget is spent for now (retry in {wait:.1f} s)",
                status=429,
                retry_after=wait,
            )

    def _call(self, request: str, fn: Any, *args: Any, search: bool = False, **kwargs: Any) -> Any:
        """Send one request (`request` is "METHOD /path", for the sync's journal)."""
        self._slot(search)
        self.sent += 1
        started = time.perf_counter()
        # The generated client's `<name>_with_http_info` twin answers (data, status,
        # headers): the journal keeps HubSpot's real status (201 for a create).
        with_info = getattr(fn.__self__, f"{fn.__name__}_with_http_info")
        try:
            answer, status, _headers = with_info(*args, _request_timeout=self.timeout, **kwargs)
        except Exception as exc:
            status = getattr(exc, "status", None)
            status = status if isinstance(status, int) else None
            _count_answer(status)
            error = translate_error(exc)
            request_journal.note(request, status, _ms_since(started), str(error))
            raise error from exc
        _count_answer(status)
        request_journal.note(request, status, _ms_since(started))
        return answer

    def search_contacts(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        page = self._call(
            "POST /crm/v3/objects/contacts/search",
            self.client.crm.contacts.search_api.do_search,
            body,
            search=True,
        )
        return [{"id": r.id, "properties": r.properties or {}} for r in page.results]

    def search_calls(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        page = self._call(
            "POST /crm/v3/objects/calls/search",
            self.client.crm.objects.calls.search_api.do_search,
            body,
            search=True,
        )
        return [{"id": r.id, "properties": r.properties or {}} for r in page.results]

    def create_call(self, body: dict[str, Any]) -> str:
        return str(
            self._call(
                "POST /crm/v3/objects/calls", self.client.crm.objects.calls.basic_api.create, body
            ).id
        )

    def update_call(self, crm_id: str, body: dict[str, Any]) -> None:
        self._call(
            "PATCH /crm/v3/objects/calls/{id}",
            self.client.crm.objects.calls.basic_api.update,
            crm_id,
            body,
        )

    def owner_id_for_email(self, email: str) -> str | None:
        page = self._call(
            "GET /crm/v3/owners", self.client.crm.owners.owners_api.get_page, email=email, limit=1
        )
        return str(page.results[0].id) if page.results else None

    def owner_by_id(self, owner_id: str) -> dict[str, Any] | None:
        try:
            owner = self._call(
                "GET /crm/v3/owners/{id}",
                self.client.crm.owners.owners_api.get_by_id,
                int(owner_id),
            )
        except PermanentCrmError as exc:
            if exc.status == 404:
                return None
            raise
        return {"id": str(owner.id), "email": owner.email, "first": owner.first_name,
                "last": owner.last_name}  # fmt: skip

    def create_contact(self, body: dict[str, Any]) -> str:
        return str(
            self._call(
                "POST /crm/v3/objects/contacts", self.client.crm.contacts.basic_api.create, body
            ).id
        )

    def search_deals(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        page = self._call(
            "POST /crm/v3/objects/deals/search",
            self.client.crm.deals.search_api.do_search,
            body,
            search=True,
        )
        return [{"id": r.id, "properties": r.properties or {}} for r in page.results]

    def associate_call(self, call_id: str, to_type: str, to_id: str, type_id: int) -> None:
        spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]
        self._call(
            "PUT /crm/v4/objects/calls/{id}/associations/{type}/{id}",
            self.client.crm.associations.v4.basic_api.create,
            "calls",
            call_id,
            to_type,
            to_id,
            spec,
        )

    def create_task(self, body: dict[str, Any]) -> str:
        return str(
            self._call(
                "POST /crm/v3/objects/tasks", self.client.crm.objects.tasks.basic_api.create, body
            ).id
        )

    def update_task(self, task_id: str, body: dict[str, Any]) -> None:
        self._call(
            "PATCH /crm/v3/objects/tasks/{id}",
            self.client.crm.objects.tasks.basic_api.update,
            task_id,
            body,
        )

    def delete_task(self, task_id: str) -> None:
        try:
            self._call(
                "DELETE /crm/v3/objects/tasks/{id}",
                self.client.crm.objects.tasks.basic_api.archive,
                task_id,
            )
        except PermanentCrmError as exc:
            if exc.status != 404:  # already gone (a rep deleted it): done
                raise

    def search_page(
        self, object_type: str, body: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a search (contacts or calls) and the `after` of the next, if any."""
        api = (
            self.client.crm.contacts
            if object_type == "contacts"
            else getattr(self.client.crm.objects, object_type)
        )
        page = self._call(
            f"POST /crm/v3/objects/{object_type}/search",
            api.search_api.do_search,
            body,
            search=True,
        )
        rows = [{"id": r.id, "properties": r.properties or {}} for r in page.results]
        nxt = page.paging.next.after if page.paging and page.paging.next else None
        return rows, nxt

    def batch_create(self, object_type: str, inputs: list[dict[str, Any]]) -> BatchAnswer:
        """``POST /crm/v3/objects/{calls|tasks}/batch/create``: one request for all inputs
        (each with its ``objectWriteTraceId``, so one bad input is a 207, not a 400)."""
        answer = self._call(
            f"POST /crm/v3/objects/{object_type}/batch/create",
            getattr(self.client.crm.objects, object_type).batch_api.create,
            {"inputs": inputs},
        )
        return _batch_answer(answer, inputs)

    def batch_update(self, object_type: str, inputs: list[dict[str, Any]]) -> BatchAnswer:
        """``POST /crm/v3/objects/{calls|tasks}/batch/update`` by record id."""
        answer = self._call(
            f"POST /crm/v3/objects/{object_type}/batch/update",
            getattr(self.client.crm.objects, object_type).batch_api.update,
            {"inputs": inputs},
        )
        return _batch_answer(answer, inputs)

    def account_details(self) -> dict[str, Any]:
        # The client library has no typed account-info API; its generic helper has no
        # timeout, so this one documented GET goes out directly.
        self._slot(search=False)
        self.sent += 1
        started = time.perf_counter()
        try:
            response = requests.get(
                f"{self.base_url}/account-info/v3/details",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            _count_answer(None)
            reason = f"HubSpot unreachable: {type(exc).__name__}"
            request_journal.note(ACCOUNT_INFO, None, _ms_since(started), reason)
            raise TransientCrmError(reason) from exc
        _count_answer(response.status_code)
        request_journal.note(ACCOUNT_INFO, response.status_code, _ms_since(started))
        if response.status_code != 200:
            error = PermanentCrmError if response.status_code < 500 else TransientCrmError
            raise error(
                f"HubSpot {response.status_code} on account info", status=response.status_code
            )
        details = response.json()
        return details if isinstance(details, dict) else {}


def _batch_answer(answer: Any, inputs: list[dict[str, Any]]) -> BatchAnswer:
    """Map a batch answer back to its inputs: by ``objectWriteTraceId``, else (an update's
    results) by record id; errors name their inputs in ``context`` the same two ways."""
    by_id = {str(i["id"]): str(i["objectWriteTraceId"]) for i in inputs if i.get("id")}
    traces = {str(i["objectWriteTraceId"]) for i in inputs}
    result = BatchAnswer()
    for row in answer.results or []:
        trace = getattr(row, "object_write_trace_id", None)
        trace = str(trace) if trace is not None else by_id.get(str(row.id))
        if trace is None and len(inputs) == 1:
            trace = str(inputs[0]["objectWriteTraceId"])
        if trace in traces:
            result.ids[trace] = str(row.id)
    for error in getattr(answer, "errors", None) or []:
        context = error.context or {}
        named = set(context.get("objectWriteTraceId") or [])
        named |= {by_id[i] for i in context.get("ids") or [] if i in by_id}
        text = f"HubSpot {error.category or ''}: {error.message or ''}".strip()
        for trace in named & traces:
            result.errors[trace] = text
    return result
