"""A fake HubSpot that behaves like HubSpot for what callhook uses, over real HTTP.

The real ``hubspot-api-client`` talks to it through ``HUBSPOT_BASE_URL``, so the
code under test runs unmodified. What it reproduces, because callhook depends on it:

- bearer-token auth (401 with HubSpot's ``INVALID_AUTHENTICATION`` body);
- validation: unknown properties, bad enumeration options, a missing
  ``hs_timestamp``, unknown association targets → 400 ``VALIDATION_ERROR`` with the
  ``message`` HubSpot writes (a list of property errors embedded in text);
- the CRM search API: filter groups OR-ed, filters AND-ed, at most 5 groups and
  6 filters per group, EQ case-insensitive, sorts, ``limit``, only the requested
  properties returned; ``hs_searchable_calculated_phone_number`` and its mobile twin
  computed the way HubSpot does it: the number without country code or formatting;
- rate limits: 100 requests per rolling 10 s (``TEN_SECONDLY_ROLLING``) and 5 search
  requests per second, answered 429 with HubSpot's body;
- owners by email and listed page by page (``after``), calls create/read/update, tasks
  create; search pages (``after``, ``paging.next.after``).

The batch endpoints (``POST /crm/v3/objects/{calls,tasks}/batch/{create,read,update,upsert}``,
the client's ``crm.objects.calls.batch_api`` and ``crm.objects.tasks.batch_api``):

- one request each, whatever the number of inputs: a batch takes one slot of the 100 per
  10 s and none of the 5 searches per second (HubSpot recommends batch APIs to save
  requests: https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details);
- at most 100 inputs, else 400 ``VALIDATION_ERROR`` "The maximum number of inputs supported
  in a batch is 100. Please reduce the number of items and try again" (HubSpot's limit:
  https://developers.hubspot.com/docs/guides/api/crm/objects/contacts#limits; its message
  as a portal answered it); 50 with ``propertiesWithHistory``;
- create: the same validation as a single create, associations inline (``inputs[].
  associations``:
  https://developers.hubspot.com/docs/api-reference/legacy/crm/activities/calls/batch/create-calls
  ); answered 201 with ``status``, ``results``, ``startedAt``,
  ``completedAt``. One invalid input fails the whole batch (400, the first invalid
  input's error, nothing created: https://github.com/HubSpot/hubspot-api-python/issues/51)
  unless every input carries an ``objectWriteTraceId``: then the valid inputs are created
  and the answer is 207 with ``numErrors`` and ``errors``, each naming its input in
  ``context.objectWriteTraceId`` ("multi-status errors",
  https://developers.hubspot.com/docs/api-reference/error-handling); each result echoes its
  ``objectWriteTraceId``;
- ``results`` do not follow the inputs' order (HubSpot's maintainers: "no way to do it",
  https://github.com/HubSpot/hubspot-api-nodejs/issues/190): here they come back reversed,
  so a caller must match them by ``objectWriteTraceId`` or by a property;
- read by id: 200, or 207 with one ``OBJECT_NOT_FOUND`` error "Could not get some CALL
  objects, they may be deleted or not exist. Check that ids are valid." whose
  ``context.ids`` lists the ids not found; the others are still answered;
- update by id: duplicate ids or an invalid value fail the whole batch (400); ids not found
  are one ``OBJECT_NOT_FOUND`` error in a 207 (with their ``objectWriteTraceId``s), the
  others are updated;
- no property of a call or a task can be unique (HubSpot has unique properties for
  contacts, companies, deals, tickets and custom objects only:
  https://developers.hubspot.com/changelog/unique-properties-for-contacts), so a read or
  an update by ``idProperty`` (e.g. ``hs_call_external_id``) and every upsert of calls or
  tasks answer 400 "Unable to perform update/upsert by non-unique 0-48 property
  hs_call_external_id in portal ID …" (HubSpot's wording for a non-unique idProperty:
  https://github.com/segmentio/action-destinations/pull/3957; the wording for a read is
  assumed to be the same). A lost create is found again by searching
  ``hs_call_external_id`` with ``IN``.

Not verified against HubSpot, so kept simple: whether ``IN`` caps its number of values (no
cap here), the 18-filters-per-search total (not enforced), an empty ``inputs`` (answered
like any batch), mixed inputs with and without ``objectWriteTraceId`` (whole-batch 400).

Tests steer it with ``fail_next`` / ``fail_next_batch`` (scripted errors: a 429 or a 5xx
on the next request or batch, nothing done), ``lose_responses`` (done, answer lost),
``reject_input`` (one input refused as an invalid value, inside a batch or alone),
``set_down`` (an outage), and read what it holds with ``calls()``, ``tasks()`` (batch-made
objects and their associations like single-made ones) and ``requests()`` (every request,
a batch once).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from werkzeug.wrappers import Request, Response

from tests.fake_server import FakeHttpServer

CALL_STATUSES = [
    "BUSY",
    "CALLING_CRM_USER",
    "CANCELED",
    "COMPLETED",
    "CONNECTING",
    "FAILED",
    "IN_PROGRESS",
    "MISSED",
    "NO_ANSWER",
    "QUEUED",
    "RINGING",
]
# HubSpot's default call outcomes (hs_call_disposition), GUID → label.
DEFAULT_OUTCOMES = {
    "9d9162e7-6cf3-4944-bf63-4dff82258764": "Busy",
    "f240bbac-87c9-4f6e-bf70-924b57d47db7": "Connected",
    "a4c4c377-d246-4b32-a13b-75a56a4cd0ff": "Left live message",
    "b2cf5968-551e-4856-9783-52b3da59a7d0": "Left voicemail",
    "73a0d17f-1163-4015-bdd5-ec830791da20": "No answer",
    "17b47fee-58de-441e-a44c-c6300d46f273": "Wrong number",
}
CALL_PROPERTIES: dict[str, str | list[str]] = {
    "hs_timestamp": "datetime",
    "hs_call_title": "string",
    "hs_call_body": "string",
    "hs_call_direction": ["INBOUND", "OUTBOUND"],
    "hs_call_duration": "number",
    "hs_call_from_number": "string",
    "hs_call_to_number": "string",
    "hs_call_status": CALL_STATUSES,
    "hs_call_disposition": "outcome",
    "hs_call_recording_url": "string",
    "hs_call_external_id": "string",
    "hs_call_source": "string",
    "hubspot_owner_id": "owner",
    "hs_createdate": "datetime",
}
TASK_PROPERTIES: dict[str, str | list[str]] = {
    "hs_timestamp": "datetime",
    "hs_task_subject": "string",
    "hs_task_body": "string",
    "hs_task_type": ["CALL", "EMAIL", "TODO"],
    "hs_task_status": ["NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"],
    "hs_task_priority": ["LOW", "MEDIUM", "HIGH", "NONE"],
    "hubspot_owner_id": "owner",
}
CONTACT_PROPERTIES = {
    "firstname",
    "lastname",
    "email",
    "company",
    "phone",
    "mobilephone",
    "hubspot_owner_id",
    "lastmodifieddate",
    "createdate",
    "hs_object_id",
    "hs_searchable_calculated_phone_number",
    "hs_searchable_calculated_mobile_number",
    "hs_lastmodifieddate",
    "associatedcompanyid",
}
# Association type ids HubSpot defines (HUBSPOT_DEFINED), by (from, to).
ASSOCIATION_TYPES = {
    ("calls", "contacts"): 194,
    ("calls", "companies"): 182,
    ("calls", "deals"): 206,
    ("tasks", "contacts"): 204,
    ("tasks", "companies"): 192,
    ("tasks", "deals"): 216,
}
DEFAULT_CONTACT_PROPERTIES = ["createdate", "email", "firstname", "hs_object_id", "lastname"]
# What a batch read answers when no `properties` are asked for (HubSpot's defaults).
DEFAULT_OBJECT_PROPERTIES = ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"]
# Batch endpoints take at most 100 inputs; 50 when property histories are asked for.
BATCH_LIMIT = 100
HISTORY_BATCH_LIMIT = 50
TOO_MANY_INPUTS = (
    "The maximum number of inputs supported in a batch is 100. "
    "Please reduce the number of items and try again"
)
TOO_MANY_HISTORY_INPUTS = (
    "The maximum number of inputs supported in a batch request for property histories "
    "is 50. Please reduce the number of items and try again"
)
# Object type ids (as HubSpot names them in errors) and the word its messages use.
OBJECT_TYPE_IDS = {
    "contacts": "0-1", "companies": "0-2", "deals": "0-3", "tasks": "0-27", "calls": "0-48",
}  # fmt: skip
OBJECT_LABELS = {
    "contacts": "CONTACT", "companies": "COMPANY", "deals": "DEAL", "tasks": "TASK",
    "calls": "CALL",
}  # fmt: skip


def searchable_number(raw: str, region: str) -> str:
    """What HubSpot puts in hs_searchable_calculated_*: no country code, no formatting."""
    try:
        number = phonenumbers.parse(raw, region)
        if phonenumbers.is_possible_number(number):
            return str(number.national_number)
    except phonenumbers.NumberParseException:
        pass
    # Unparseable: HubSpot keeps the digits and drops leading zeros ("0612…" → "612…").
    return "".join(ch for ch in raw if ch.isdigit()).lstrip("0")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_body(category: str | None, message: str, **extra: Any) -> dict[str, Any]:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), **extra}
    if category is not None:
        body["category"] = category
    return body


def _answer(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(status: int, category: str | None, message: str, **extra: Any) -> Response:
    return _answer(status, _error_body(category, message, **extra))


def _property_error_body(errors: list[dict[str, str]]) -> dict[str, Any]:
    # HubSpot embeds the list of property errors, JSON-encoded, inside `message`.
    return _error_body(
        "VALIDATION_ERROR",
        "Property values were not valid: " + json.dumps(errors),
        errors=[{"message": e["message"], "code": e["error"]} for e in errors],
    )


def _property_errors(errors: list[dict[str, str]]) -> Response:
    return _answer(400, _property_error_body(errors))


def _input_error(body: dict[str, Any], context: dict[str, list[str]]) -> dict[str, Any]:
    """One entry of a 207's `errors`: the error an input alone would have had, with the
    `context` that names the input (`objectWriteTraceId`, or the `ids` not found)."""
    return {
        "status": "error",
        "category": body.get("category", "VALIDATION_ERROR"),
        "message": body["message"],
        "errors": body.get("errors", []),
        "context": context,
        "links": {},
    }


class FakeHubSpot(FakeHttpServer):
    """Start with ``with FakeHubSpot(token=...) as fake:``; ``fake.url`` is its base URL."""

    def __init__(
        self,
        token: str,
        default_region: str = "US",
        rate_limit: tuple[int, float] = (100, 10.0),
        search_per_second: int = 5,
        portal_id: int = 26_123_456,
    ):
        self.token = token
        self.portal_id = portal_id
        self.region = default_region
        self.rate_limit = rate_limit
        self.search_per_second = search_per_second
        self._lock = threading.RLock()
        self._ids = itertools.count(51_000_000_001)
        self.reset()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.root_url

    def reset(self) -> None:
        """Forget every object, request and scripted failure (each test starts clean)."""
        with self._lock:
            self.objects: dict[str, dict[str, dict[str, Any]]] = {
                "contacts": {},
                "calls": {},
                "tasks": {},
                "companies": {},
                "deals": {},
            }
            self.owners: list[dict[str, Any]] = []
            self.custom_properties: dict[str, set[str]] = {"calls": set(), "tasks": set()}
            self.outcomes = dict(DEFAULT_OUTCOMES)
            self._log: list[dict[str, Any]] = []
            self._recent: deque[float] = deque()
            self._recent_search: deque[float] = deque()
            self._failures: list[dict[str, Any]] = []
            self._lost: list[dict[str, Any]] = []
            self._rejections: list[dict[str, Any]] = []
            self._down: int | None = None

    # -- what tests arrange ----------------------------------------------------------
    def add_contact(self, **properties: Any) -> str:
        """A contact as HubSpot stores it, calculated phone properties included."""
        with self._lock:
            contact_id = str(next(self._ids))
            now = time.time()
            props = {k: (None if v is None else str(v)) for k, v in properties.items()}
            props.setdefault("lastmodifieddate", _iso(now))
            props["createdate"] = _iso(now)
            props["hs_object_id"] = contact_id
            for source, target in (
                ("phone", "hs_searchable_calculated_phone_number"),
                ("mobilephone", "hs_searchable_calculated_mobile_number"),
            ):
                if props.get(source):
                    props[target] = searchable_number(props[source], self.region)
            self.objects["contacts"][contact_id] = {
                "id": contact_id,
                "properties": props,
                "created": now,
                "associations": {},
            }
            return contact_id

    def add_company(self, name: str) -> str:
        with self._lock:
            company_id = str(next(self._ids))
            self.objects["companies"][company_id] = {
                "id": company_id, "properties": {"name": name, "hs_object_id": company_id},
                "created": time.time(), "associations": {},
            }  # fmt: skip
            return company_id

    def add_deal(
        self, name: str, contact_id: str, *, closed: bool = False, amount: str | None = None
    ) -> str:
        """A deal associated with a contact; `closed` deals are not "open deals"."""
        with self._lock:
            deal_id = str(next(self._ids))
            now = time.time()
            self.objects["deals"][deal_id] = {
                "id": deal_id,
                "properties": {"dealname": name, "hs_object_id": deal_id, "amount": amount,
                               "hs_is_closed": "true" if closed else "false",
                               "hs_lastmodifieddate": _iso(now)},
                "created": now, "associations": {"contacts": [contact_id]},
            }  # fmt: skip
            return deal_id

    def add_owner(self, email: str, first: str = "", last: str = "") -> str:
        with self._lock:
            owner_id = str(next(self._ids))
            self.owners.append({"id": owner_id, "email": email, "first": first, "last": last})
            return owner_id

    def add_property(self, object_type: str, name: str) -> None:
        """A custom property created in the portal's settings."""
        with self._lock:
            self.custom_properties[object_type].add(name)

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        retry_after: float | None = None,
        path_prefix: str = "",
        policy: str = "TEN_SECONDLY_ROLLING",
        batch_only: bool = False,
    ) -> None:
        """Answer the next `count` requests under `path_prefix` with `status` (only the
        batch endpoints' when `batch_only`). Nothing they ask for is done."""
        with self._lock:
            self._failures.append(
                {
                    "count": count,
                    "status": status,
                    "retry_after": retry_after,
                    "prefix": path_prefix,
                    "policy": policy,
                    "batch_only": batch_only,
                }
            )

    def fail_next_batch(
        self,
        status: int,
        *,
        count: int = 1,
        object_type: str = "",
        retry_after: float | None = None,
        policy: str = "TEN_SECONDLY_ROLLING",
    ) -> None:
        """Answer the next `count` batch requests (of `object_type`, or any) with `status`:
        429 with HubSpot's rate-limit body and headers, 5xx with an error body."""
        prefix = f"/crm/v3/objects/{object_type}/batch/" if object_type else ""
        self.fail_next(
            count,
            status,
            retry_after=retry_after,
            path_prefix=prefix,
            policy=policy,
            batch_only=True,
        )

    def reject_input(
        self,
        object_type: str,
        property_name: str,
        value: str,
        *,
        count: int | None = None,
    ) -> None:
        """Refuse any create or update of `object_type` whose `property_name` is `value`, as
        HubSpot refuses an invalid property value (INVALID_OPTION), `count` times (None:
        always). In a batch, that one input is invalid: see the batch rules above."""
        with self._lock:
            self._rejections.append(
                {"type": object_type, "name": property_name, "value": value, "count": count}
            )

    def lose_responses(self, count: int, path_prefix: str = "") -> None:
        """Do the next `count` requests under `path_prefix`, but answer 504 as a proxy would
        whose upstream answered too late: the object exists, the client never hears of it."""
        with self._lock:
            self._lost.append({"count": count, "prefix": path_prefix})

    def set_down(self, status: int | None) -> None:
        """Answer every request with `status` (502, 503…) until called with None."""
        with self._lock:
            self._down = status

    # -- what tests read -------------------------------------------------------------
    def calls(self) -> list[dict[str, Any]]:
        return self._dump("calls")

    def tasks(self) -> list[dict[str, Any]]:
        return self._dump("tasks")

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._log]

    def _dump(self, object_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "id": o["id"],
                    "properties": dict(o["properties"]),
                    "associations": {k: list(v) for k, v in o["associations"].items()},
                    # When it was created and last written (epoch seconds, this clock).
                    "created": o["created"],
                    "updated": o.get("updated", o["created"]),
                }
                for o in self.objects[object_type].values()
            ]

    # -- HTTP --------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            response = self._handle(request)
            self._log.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string.decode(),
                    "status": response.status_code,
                    "body": request.get_json(silent=True),
                    "at": time.time(),
                }
            )
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        scripted = self._scripted(request.path)
        if scripted is not None:
            return scripted
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        limited = self._rate_limited(request.path)
        if limited is not None:
            return limited
        response = self._route(request)
        for lost in self._lost:
            if lost["count"] > 0 and request.path.startswith(lost["prefix"]):
                lost["count"] -= 1
                return Response("<html>Gateway Timeout</html>", status=504, mimetype="text/html")
        return response

    def _scripted(self, path: str) -> Response | None:
        if self._down is not None:
            return Response(
                "<html><body>Bad gateway</body></html>", status=self._down, mimetype="text/html"
            )
        for failure in self._failures:
            if failure["batch_only"] and "/batch/" not in path:
                continue
            if failure["count"] > 0 and path.startswith(failure["prefix"]):
                failure["count"] -= 1
                if failure["status"] == 429:
                    response = self._limit_response(failure["policy"])
                else:
                    response = _error(
                        failure["status"],
                        "VALIDATION_ERROR" if failure["status"] < 500 else "INTERNAL_ERROR",
                        f"scripted failure {failure['status']}",
                    )
                if failure["retry_after"] is not None:
                    response.headers["Retry-After"] = str(failure["retry_after"])
                return response
        return None

    def _limit_response(self, policy: str) -> Response:
        name = policy.lower()
        response = _error(
            429,
            None,
            f"You have reached your {name} limit.",
            errorType="RATE_LIMIT",
            policyName=policy,
            groupName="publicapi:private-app:fake",
        )
        response.headers["X-HubSpot-RateLimit-Max"] = str(self.rate_limit[0])
        response.headers["X-HubSpot-RateLimit-Remaining"] = "0"
        response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(
            int(self.rate_limit[1] * 1000)
        )
        return response

    def _rate_limited(self, path: str) -> Response | None:
        now = time.monotonic()
        limit, window = self.rate_limit
        while self._recent and self._recent[0] <= now - window:
            self._recent.popleft()
        if len(self._recent) >= limit:
            return self._limit_response("TEN_SECONDLY_ROLLING")
        self._recent.append(now)
        if path.endswith("/search"):
            while self._recent_search and self._recent_search[0] <= now - 1.0:
                self._recent_search.popleft()
            if len(self._recent_search) >= self.search_per_second:
                return _error(
                    429,
                    None,
                    "You have reached your secondly limit.",
                    errorType="RATE_LIMIT",
                    policyName="SECONDLY",
                )
            self._recent_search.append(now)
        return None

    def _route(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        method = request.method
        if parts[:2] == ["crm", "v3"] and parts[2:3] == ["owners"]:
            if len(parts) == 4 and method == "GET":
                return self._owner(parts[3])
            return self._owners(request)
        if parts == ["account-info", "v3", "details"] and method == "GET":
            return Response(
                json.dumps(
                    {
                        "portalId": self.portal_id,
                        "accountType": "STANDARD",
                        "timeZone": "Europe/Paris",
                        "companyCurrency": "EUR",
                        "additionalCurrencies": [],
                        "utcOffset": "+01:00",
                        "utcOffsetMilliseconds": 3_600_000,
                        "uiDomain": "app-eu1.hubspot.com",
                        "dataHostingLocation": "eu1",
                    }
                ),
                mimetype="application/json",
            )
        if parts[:3] == ["crm", "v4", "objects"] and len(parts) == 8 and method == "PUT":
            return self._associate(parts[3], parts[4], parts[6], parts[7], request)
        if parts[:3] == ["crm", "v3", "objects"] and len(parts) >= 4:
            object_type = parts[3]
            if object_type not in self.objects:
                return _error(404, "OBJECT_NOT_FOUND", f"Unknown object type {object_type}")
            rest = parts[4:]
            if rest == ["search"] and method == "POST":
                return self._search(object_type, request)
            if len(rest) == 2 and rest[0] == "batch" and method == "POST":
                return self._batch(object_type, rest[1], request)
            if rest == [] and method == "POST":
                return self._create(object_type, request)
            if len(rest) == 1 and method == "GET":
                return self._read(object_type, rest[0], request)
            if len(rest) == 1 and method == "PATCH":
                return self._update(object_type, rest[0], request)
            if len(rest) == 1 and method == "DELETE":
                if self.objects[object_type].pop(rest[0], None) is None:
                    return _error(404, "OBJECT_NOT_FOUND", f"resource not found: {rest[0]}")
                return Response(status=204)
        return _error(404, "OBJECT_NOT_FOUND", f"No route for {method} {request.path}")

    # -- endpoints -----------------------------------------------------------------------
    def _json(self, request: Request) -> dict[str, Any] | None:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else None

    def _public(self, obj: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
        props = obj["properties"]
        wanted = names if names is not None else list(props)
        return {
            "id": obj["id"],
            "properties": {n: props.get(n) for n in wanted},
            "createdAt": _iso(obj["created"]),
            "updatedAt": _iso(obj.get("updated", obj["created"])),
            "archived": False,
        }

    def _validate(
        self, object_type: str, properties: dict[str, Any], *, creating: bool
    ) -> dict[str, Any] | None:
        """The body of HubSpot's 400 for these property values, or None when valid."""
        schema = CALL_PROPERTIES if object_type == "calls" else TASK_PROPERTIES
        errors = []
        for name, value in properties.items():
            kind = schema.get(name)
            if kind is None and name not in self.custom_properties.get(object_type, set()):
                errors.append(
                    {
                        "isValid": False,
                        "message": f'Property "{name}" does not exist',
                        "error": "PROPERTY_DOESNT_EXIST",
                        "name": name,
                    }
                )
                continue
            text = "" if value is None else str(value)
            bad = None
            if isinstance(kind, list) and text and text not in kind:
                bad = ("INVALID_OPTION", f"{text} was not one of the allowed options: {kind}")
            elif kind == "number" and text:
                try:
                    float(text)
                except ValueError:
                    bad = ("INVALID_FLOAT", f"{text} is not a valid number")
            elif kind == "datetime" and text and not _valid_time(text):
                bad = ("INVALID_DATE", f"{text} is not a valid datetime")
            elif kind == "outcome" and text and text not in self.outcomes:
                bad = ("INVALID_OPTION", f"{text} was not one of the allowed call outcomes")
            elif kind == "owner" and text and all(o["id"] != text for o in self.owners):
                bad = ("INVALID_OWNER_ID", f"{text} is not a valid owner id")
            if bad:
                errors.append({"isValid": False, "message": bad[1], "error": bad[0], "name": name})
        if creating and not properties.get("hs_timestamp"):
            errors.append(
                {
                    "isValid": False,
                    "message": "hs_timestamp is required",
                    "error": "REQUIRED_PROPERTY",
                    "name": "hs_timestamp",
                }
            )
        errors.extend(self._scripted_rejections(object_type, properties))
        return _property_error_body(errors) if errors else None

    def _scripted_rejections(
        self, object_type: str, properties: dict[str, Any]
    ) -> list[dict[str, Any]]:
        found = []
        for rule in self._rejections:
            if rule["type"] != object_type or rule["count"] == 0:
                continue
            if properties.get(rule["name"]) != rule["value"]:
                continue
            if rule["count"] is not None:
                rule["count"] -= 1
            found.append(
                {
                    "isValid": False,
                    "message": f"{rule['value']} was not one of the allowed options",
                    "error": "INVALID_OPTION",
                    "name": rule["name"],
                }
            )
        return found

    def _create(self, object_type: str, request: Request) -> Response:
        if object_type == "contacts":
            return self._create_contact(request)
        if object_type not in ("calls", "tasks"):
            return _error(405, "VALIDATION_ERROR", f"create {object_type} is not faked")
        prepared = self._prepare_create(object_type, self._json(request))
        if isinstance(prepared, dict):
            return _answer(400, prepared)
        obj = self._store_new(object_type, *prepared)
        return _answer(201, self._public(obj, None))

    def _prepare_create(
        self, object_type: str, body: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, list[str]]] | dict[str, Any]:
        """(properties, associations) of a valid create input, else the body of HubSpot's
        400 for it: the same checks for a single create and for each batch input."""
        if body is None or not isinstance(body.get("properties"), dict):
            return _error_body("VALIDATION_ERROR", "Invalid input JSON: properties are required")
        properties = {k: (None if v is None else str(v)) for k, v in body["properties"].items()}
        problem = self._validate(object_type, properties, creating=True)
        if problem is not None:
            return problem
        links: dict[str, list[str]] = {}
        for assoc in body.get("associations") or []:
            target = str((assoc.get("to") or {}).get("id", ""))
            for kind in assoc.get("types") or []:
                type_id = kind.get("associationTypeId")
                to_type = next(
                    (
                        t
                        for (f, t), i in ASSOCIATION_TYPES.items()
                        if f == object_type and i == type_id
                    ),
                    None,
                )
                if kind.get("associationCategory") != "HUBSPOT_DEFINED" or to_type is None:
                    return _error_body(
                        "VALIDATION_ERROR",
                        f"{type_id} is not a valid association type id for {object_type}",
                    )
                if target not in self.objects[to_type]:
                    return _error_body(
                        "VALIDATION_ERROR",
                        f"One or more associations are invalid: {to_type} {target} not found",
                    )
                links.setdefault(to_type, []).append(target)
        return properties, links

    def _store_new(
        self, object_type: str, properties: dict[str, Any], links: dict[str, list[str]]
    ) -> dict[str, Any]:
        object_id = str(next(self._ids))
        now = time.time()
        obj = {"id": object_id, "properties": properties, "created": now, "associations": links}
        properties["hs_object_id"] = object_id
        properties["hs_createdate"] = _iso(now)
        self.objects[object_type][object_id] = obj
        return obj

    def _create_contact(self, request: Request) -> Response:
        body = self._json(request)
        if body is None or not isinstance(body.get("properties"), dict):
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON: properties are required")
        unknown = [n for n in body["properties"] if n not in CONTACT_PROPERTIES]
        if unknown:
            return _property_errors(
                [
                    {"isValid": False, "message": f'Property "{n}" does not exist',
                     "error": "PROPERTY_DOESNT_EXIST", "name": n}
                    for n in unknown
                ]
            )  # fmt: skip
        contact_id = self.add_contact(**body["properties"])
        obj = self.objects["contacts"][contact_id]
        return Response(
            json.dumps(self._public(obj, None)), status=201, mimetype="application/json"
        )

    def _associate(
        self, from_type: str, from_id: str, to_type: str, to_id: str, request: Request
    ) -> Response:
        """PUT /crm/v4/objects/{from}/{id}/associations/{toType}/{toId} with the types."""
        source = self.objects.get(from_type, {}).get(from_id)
        if source is None or to_id not in self.objects.get(to_type, {}):
            return _error(404, "OBJECT_NOT_FOUND", "resource not found")
        specs = request.get_json(silent=True) or []
        if not isinstance(specs, list) or not all(
            ASSOCIATION_TYPES.get((from_type, to_type)) == spec.get("associationTypeId")
            for spec in specs
        ):
            return _error(400, "VALIDATION_ERROR", "invalid association type")
        links = source["associations"].setdefault(to_type, [])
        if to_id not in links:
            links.append(to_id)
        body = {"fromObjectTypeId": from_type, "fromObjectId": int(from_id),
                "toObjectTypeId": to_type, "toObjectId": int(to_id),
                "labels": []}  # fmt: skip
        return Response(json.dumps(body), status=201, mimetype="application/json")

    def _owner(self, owner_id: str) -> Response:
        owner = next((o for o in self.owners if o["id"] == owner_id), None)
        if owner is None:
            return _error(404, "OBJECT_NOT_FOUND", f"resource not found: {owner_id}")
        return Response(json.dumps(self._public_owner(owner)), mimetype="application/json")

    def _public_owner(self, o: dict[str, Any]) -> dict[str, Any]:
        now = _iso(time.time())
        return {
            "id": o["id"],
            "email": o["email"],
            "firstName": o["first"],
            "lastName": o["last"],
            "userId": int(o["id"]) % 1_000_000,
            "type": "PERSON",
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
        }

    def _update(self, object_type: str, object_id: str, request: Request) -> Response:
        obj = self.objects[object_type].get(object_id)
        if obj is None:
            return _error(404, "OBJECT_NOT_FOUND", f"resource not found: {object_id}")
        body = self._json(request)
        if body is None or not isinstance(body.get("properties"), dict):
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON: properties are required")
        properties = {k: (None if v is None else str(v)) for k, v in body["properties"].items()}
        problem = self._validate(object_type, properties, creating=False)
        if problem is not None:
            return _answer(400, problem)
        # An empty string clears a property, as in HubSpot.
        obj["properties"].update({k: (v or None) for k, v in properties.items()})
        obj["updated"] = time.time()
        return Response(json.dumps(self._public(obj, None)), mimetype="application/json")

    # -- batch endpoints ------------------------------------------------------------------
    def _batch(self, object_type: str, operation: str, request: Request) -> Response:
        """POST /crm/v3/objects/{type}/batch/{create|read|update|upsert}: one request, however
        many inputs (the rate limits count it once)."""
        body = self._json(request)
        inputs = body.get("inputs") if body is not None else None
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON: inputs are required")
        if len(inputs) > BATCH_LIMIT:
            return _error(400, "VALIDATION_ERROR", TOO_MANY_INPUTS)
        assert body is not None
        if operation == "create":
            return self._batch_create(object_type, inputs)
        if operation == "read":
            return self._batch_read(object_type, body, inputs)
        if operation == "update":
            return self._batch_update(object_type, inputs)
        if operation == "upsert":
            return self._batch_upsert(object_type, inputs)
        return _error(404, "OBJECT_NOT_FOUND", f"No route for POST {request.path}")

    def _batch_answer(
        self, started: float, results: list[dict[str, Any]], errors: list[dict[str, Any]], ok: int
    ) -> Response:
        # HubSpot does not keep the inputs' order in `results` (hubspot-api-nodejs#190):
        # they come back reversed here, so a caller must match them by content.
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": list(reversed(results)),
            "startedAt": _iso(started),
            "completedAt": _iso(time.time()),
        }
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
        return _answer(207 if errors else ok, body)

    def _batch_create(self, object_type: str, inputs: list[dict[str, Any]]) -> Response:
        """Calls and tasks created with their associations inline. An invalid input fails the
        whole batch (400, the first invalid input's error, nothing created) unless every
        input has an `objectWriteTraceId`: then the valid ones are created and the answer is
        207, each failure naming its input in `context.objectWriteTraceId`."""
        if object_type not in ("calls", "tasks"):
            return _error(405, "VALIDATION_ERROR", f"batch create {object_type} is not faked")
        started = time.time()
        traced = bool(inputs) and all(i.get("objectWriteTraceId") for i in inputs)
        valid, errors = [], []
        for item in inputs:
            prepared = self._prepare_create(object_type, item)
            if isinstance(prepared, dict):
                if not traced:
                    return _answer(400, prepared)
                trace = str(item["objectWriteTraceId"])
                errors.append(_input_error(prepared, {"objectWriteTraceId": [trace]}))
            else:
                valid.append((item, prepared))
        results = []
        for item, (properties, links) in valid:
            public = self._public(self._store_new(object_type, properties, links), None)
            if item.get("objectWriteTraceId"):
                public["objectWriteTraceId"] = str(item["objectWriteTraceId"])
            results.append(public)
        return self._batch_answer(started, results, errors, 201)

    def _not_unique(self, object_type: str, id_property: str) -> Response:
        # No property of a call or a task can be unique (HubSpot has unique properties for
        # contacts, companies, deals, tickets and custom objects only), so an idProperty
        # other than the record id is refused, with the message HubSpot writes for it.
        return _error(
            400,
            "VALIDATION_ERROR",
            f"Unable to perform update/upsert by non-unique {OBJECT_TYPE_IDS[object_type]} "
            f"property {id_property} in portal ID {self.portal_id}",
        )

    def _missing(self, object_type: str, ids: list[str], traces: list[str]) -> dict[str, Any]:
        context = {"ids": ids}
        if traces:
            context["objectWriteTraceId"] = traces
        return _input_error(
            {
                "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {OBJECT_LABELS[object_type]} objects, they may "
                "be deleted or not exist. Check that ids are valid.",
            },
            context,
        )

    def _batch_read(
        self, object_type: str, body: dict[str, Any], inputs: list[dict[str, Any]]
    ) -> Response:
        """Records by id: 200, or 207 with one OBJECT_NOT_FOUND error listing the ids not
        found (the records that exist are still answered)."""
        if body.get("propertiesWithHistory") and len(inputs) > HISTORY_BATCH_LIMIT:
            return _error(400, "VALIDATION_ERROR", TOO_MANY_HISTORY_INPUTS)
        id_property = body.get("idProperty")
        if id_property and id_property != "hs_object_id":
            return self._not_unique(object_type, id_property)
        started = time.time()
        names = body.get("properties") or (
            DEFAULT_CONTACT_PROPERTIES if object_type == "contacts" else DEFAULT_OBJECT_PROPERTIES
        )
        results, missing, seen = [], [], set()
        for item in inputs:
            object_id = str(item.get("id", ""))
            if object_id in seen:
                continue
            seen.add(object_id)
            obj = self.objects[object_type].get(object_id)
            if obj is None:
                missing.append(object_id)
            else:
                results.append(self._public(obj, names))
        errors = [self._missing(object_type, missing, [])] if missing else []
        return self._batch_answer(started, results, errors, 200)

    def _batch_update(self, object_type: str, inputs: list[dict[str, Any]]) -> Response:
        """Records updated by id. Duplicate ids or an invalid property value fail the whole
        batch (400, nothing updated); ids not found are one OBJECT_NOT_FOUND error in a 207
        (their `objectWriteTraceId`s in its context), the others are updated."""
        if object_type not in ("calls", "tasks"):
            return _error(405, "VALIDATION_ERROR", f"batch update {object_type} is not faked")
        started = time.time()
        for item in inputs:
            if item.get("idProperty") and item["idProperty"] != "hs_object_id":
                return self._not_unique(object_type, str(item["idProperty"]))
        ids = [str(item.get("id", "")) for item in inputs]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            return _error(
                400,
                "VALIDATION_ERROR",
                f"Duplicate IDs found in batch input: [{', '.join(duplicates)}]. "
                "IDs must be unique",
            )
        changes = []
        for item in inputs:
            if not isinstance(item.get("properties"), dict):
                return _error(
                    400, "VALIDATION_ERROR", "Invalid input JSON: properties are required"
                )
            properties = {k: (None if v is None else str(v)) for k, v in item["properties"].items()}
            problem = self._validate(object_type, properties, creating=False)
            if problem is not None:
                return _answer(400, problem)
            changes.append((item, properties))
        results, missing, traces = [], [], []
        for item, properties in changes:
            obj = self.objects[object_type].get(str(item.get("id", "")))
            if obj is None:
                missing.append(str(item.get("id", "")))
                if item.get("objectWriteTraceId"):
                    traces.append(str(item["objectWriteTraceId"]))
                continue
            # An empty string clears a property, as in HubSpot.
            obj["properties"].update({k: (v or None) for k, v in properties.items()})
            obj["updated"] = time.time()
            public = self._public(obj, None)
            if item.get("objectWriteTraceId"):
                public["objectWriteTraceId"] = str(item["objectWriteTraceId"])
            results.append(public)
        errors = [self._missing(object_type, missing, traces)] if missing else []
        return self._batch_answer(started, results, errors, 200)

    def _batch_upsert(self, object_type: str, inputs: list[dict[str, Any]]) -> Response:
        """Upsert needs a unique idProperty: calls and tasks have none, so it is refused."""
        if object_type not in ("calls", "tasks"):
            return _error(405, "VALIDATION_ERROR", f"batch upsert {object_type} is not faked")
        first = inputs[0] if inputs else {}
        return self._not_unique(object_type, str(first.get("idProperty") or "hs_object_id"))

    def _read(self, object_type: str, object_id: str, request: Request) -> Response:
        obj = self.objects[object_type].get(object_id)
        if obj is None:
            return _error(404, "OBJECT_NOT_FOUND", f"resource not found: {object_id}")
        names = request.args.get("properties")
        return Response(
            json.dumps(self._public(obj, names.split(",") if names else None)),
            mimetype="application/json",
        )

    def _search(self, object_type: str, request: Request) -> Response:
        body = self._json(request) or {}
        groups = body.get("filterGroups") or []
        if len(groups) > 5:
            return _error(400, "VALIDATION_ERROR", "Too many filter groups (max 5)")
        known = CONTACT_PROPERTIES if object_type == "contacts" else None
        for group in groups:
            filters = group.get("filters") or []
            if len(filters) > 6:
                return _error(400, "VALIDATION_ERROR", "Too many filters in a group (max 6)")
            for f in filters:
                if known is not None and f.get("propertyName") not in known:
                    return _error(
                        400,
                        "VALIDATION_ERROR",
                        f"There was a problem with the request: property "
                        f"{f.get('propertyName')!r} does not exist",
                    )
        limit = int(body.get("limit") or 10)
        if not 0 < limit <= 200:
            return _error(400, "VALIDATION_ERROR", "limit must be between 1 and 200")
        found = [
            o
            for o in self.objects[object_type].values()
            if not groups or any(_group_matches(g, _searchable(o)) for g in groups)
        ]
        for sort in reversed(body.get("sorts") or []):
            name = sort.get("propertyName")
            found.sort(
                key=lambda o, n=name: str(o["properties"].get(n) or ""),
                reverse=sort.get("direction") == "DESCENDING",
            )
        names = body.get("properties") or (
            DEFAULT_CONTACT_PROPERTIES if object_type == "contacts" else ["hs_object_id"]
        )
        after = str(body.get("after") or "0")
        first = int(after) if after.isdigit() else 0
        page = [self._public(o, names) for o in found[first : first + limit]]
        answer: dict[str, Any] = {"total": len(found), "results": page}
        if first + limit < len(found):
            nxt = str(first + limit)
            answer["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
        return _answer(200, answer)

    def _owners(self, request: Request) -> Response:
        # GET /crm/v3/owners: `email` filters, `limit` (at most 500) and the opaque `after`
        # page; `paging.next.after` when more follow (HubSpot's owners API reference).
        email = request.args.get("email")
        limit = min(int(request.args.get("limit") or 100), 500)
        matches = [o for o in self.owners if email is None or o["email"].lower() == email.lower()]
        after = request.args.get("after")
        first = int(after) if after and after.isdigit() else 0
        results = [self._public_owner(o) for o in matches[first : first + limit]]
        body: dict[str, Any] = {"results": results}
        if first + limit < len(matches):
            nxt = str(first + limit)
            body["paging"] = {
                "next": {"after": nxt, "link": f"{self.url}/crm/v3/owners/?after={nxt}"}
            }
        return Response(json.dumps(body), mimetype="application/json")


def _valid_time(text: str) -> bool:
    if text.isdigit():
        return True
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _searchable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object's properties plus HubSpot's `associations.<type>` search pseudo-properties."""
    props = dict(obj["properties"])
    for to_type, ids in obj["associations"].items():
        if ids:
            props[f"associations.{to_type.rstrip('s')}"] = ids[0]
    return props


def _group_matches(group: dict[str, Any], props: dict[str, Any]) -> bool:
    return all(_filter_matches(f, props) for f in group.get("filters") or [])


def _filter_matches(f: dict[str, Any], props: dict[str, Any]) -> bool:
    value = props.get(f.get("propertyName"))
    op = f.get("operator", "EQ")
    if op == "HAS_PROPERTY":
        return value not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return value in (None, "")
    if value is None:
        return False
    text = str(value).casefold()
    if op == "EQ":
        return text == str(f.get("value", "")).casefold()
    if op == "NEQ":
        return text != str(f.get("value", "")).casefold()
    if op == "IN":
        return text in {str(v).casefold() for v in f.get("values") or []}
    if op == "CONTAINS_TOKEN":
        return str(f.get("value", "")).casefold().strip("*") in text
    return False
