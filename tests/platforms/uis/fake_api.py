"""A fake UIS Call API (JSON-RPC 2.0), over real HTTP, for ``start.employee_call``.

Reproduces, from the UIS Call API documentation (in English, CallGear's copy:
https://callgear.github.io/call_api/):

- "Fields common for all methods": ``jsonrpc`` "2.0", ``id``, ``method``, ``params``;
  batches and notifications are refused (-32099);
- "Error messages" and its example: ``error: {code, message, data: {mnemonic, field, value,
  params, extended_helper}}``, answered with HTTP 200 as JSON-RPC does;
- "List of errors common for all methods": the texts, codes and mnemonics used below
  (parse_error, invalid_request, method_not_found, access_token_*, ip_not_whitelisted,
  limit_exceeded, required_parameter_missed, unexpected_parameters, data_type_error,
  invalid_parameter_value);
- "Limits and restrictions" and "Meta parameters": ``metadata.limits`` on every answer
  except parse/request/method/auth/IP errors; points charged only for a success.

From the Russian original
(https://www.uiscom.ru/academiya/spravochnyj-centr/dokumentatsiya-api/call_api/), method page
"Вызов на сотрудника" (.../call_api/create_call/start_employee_call): the
method's parameters (``first_call``, ``virtual_phone_number``, ``contact`` as E.164
digits, ``employee: {id, phone_number}``, ...), its result ``{"data": {"call_session_id":
...}}`` (first id is the doc's example, 237859081) and its errors (employee_not_found,
no_active_phone_number, virtual_phone_number_not_found, own_virtual_phone_number_not_allowed,
contact_in_blacklist).

And the Data API's ``get.employees`` (``fake.data_url``, path ``/v2.0`` as
``https://dataapi.uiscom.ru/v2.0``), from the UIS Data API documentation
(https://www.uiscom.ru/academiya/spravochnyj-centr/dokumentatsiya-api/data_api/), method
"get.employees": params ``access_token``, ``limit``, ``offset``, ``fields``; result
``{"data": [...], "metadata": {...}}``; each employee with ``id``, ``full_name``,
``first_name``, ``last_name``, ``email`` and ``extension: {extension_phone_number}``. Tests
give an employee these with ``add_employee(..., full_name=, email=, extension=)``.

Where an error's metadata goes is not documented: like UIS's Data API (same platform; see
the client of github.com/zfullio/comagic-service, ``pkg/comagic/client.go``), it is
``error.data.metadata``. What UIS does with a "+" in ``contact`` is not documented either:
the fake refuses anything but digits, so a client sending another form is caught.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.fake_server import FakeHttpServer

METHOD = "start.employee_call"
DATA_METHOD = "get.employees"
EMPLOYEE_FIELDS = {"id", "full_name", "first_name", "last_name", "email", "extension", "login",
                   "status", "phone_numbers"}  # fmt: skip
PARAMS = {
    "access_token",
    "first_call",
    "switch_at_once",
    "early_switching",
    "media_file_id",
    "virtual_phone_number",
    "show_virtual_phone_number",
    "contact",
    "external_id",
    "dtmf_string",
    "direction",
    "employee",
    "contact_message",
    "employee_message",
}
# Errors that come without metadata ("Limits and restrictions").
NO_METADATA = {
    "parse_error",
    "invalid_request",
    "method_not_found",
    "access_token_blocked",
    "access_token_invalid",
    "access_token_expired",
    "auth_error",
    "ip_not_whitelisted",
}


class RpcError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        mnemonic: str,
        *,
        field: str | None = None,
        value: Any = None,
        params: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.code, self.message, self.mnemonic = code, message, mnemonic
        self.field, self.value, self.params, self.metadata = field, value, params, metadata


class FakeUis(FakeHttpServer):
    """``with FakeUis(access_token=..., virtual_numbers=[...]) as fake:``; ``fake.url``."""

    def __init__(
        self,
        *,
        access_token: str,
        virtual_numbers: list[str] | tuple[str, ...] = ("74993720692",),
        base_path: str = "/v4.0",
        data_path: str = "/v2.0",
    ):
        self.base_path = base_path
        self.data_path = data_path
        self.profiles: dict[int, dict[str, Any]] = {}  # id → what get.employees shows
        self.tokens: dict[str, str] = {access_token: "active"}  # → active|expired|blocked
        self.virtual_numbers = set(virtual_numbers)
        self.employees: dict[int, list[str]] = {}  # id → active phone numbers
        self.blacklist: set[str] = set()
        self.whitelisted_ips: set[str] | None = None  # None: every address allowed
        self.limits = {
            "day_limit": 750,
            "day_remaining": 750,
            "day_reset": 31492,
            "minute_limit": 150,
            "minute_remaining": 150,
            "minute_reset": 52,
        }
        self.calls: list[dict[str, Any]] = []
        self._session_ids = itertools.count(237859081)
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._limited: list[tuple[str, float]] = []
        self._scripted: list[RpcError | int] = []

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.root_url + self.base_path

    @property
    def data_url(self) -> str:
        return self.root_url + self.data_path

    # -- what tests arrange ----------------------------------------------------------
    def add_employee(
        self,
        employee_id: int,
        phone_numbers: list[str] | None = None,
        *,
        full_name: str = "",
        email: str | None = None,
        extension: str | None = None,
    ) -> None:
        """An employee; ``[]`` means none of their numbers is active."""
        self.employees[employee_id] = ["79260000001"] if phone_numbers is None else phone_numbers
        last, _, first = full_name.partition(" ")  # UIS writes "Last First [Patronymic]"
        self.profiles[employee_id] = {
            "id": employee_id,
            "full_name": full_name,
            "first_name": first.split(" ")[0] if first else "",
            "last_name": last,
            "email": email,
            "extension": {"extension_phone_number": extension},
            "login": f"employee{employee_id}",
            "status": "available",
            "phone_numbers": [{"phone_number": n} for n in self.employees[employee_id]],
        }

    def set_token(self, token: str, state: str) -> None:
        self.tokens[token] = state

    def limit_next(self, limit_type: str = "minute", *, reset_s: float, count: int = 1) -> None:
        """The next ``count`` calls exceed the per-minute (or per-day) points limit."""
        self._limited.extend([(limit_type, reset_s)] * count)

    def fail_next(self, failure: RpcError | int) -> None:
        """The next request gets this JSON-RPC error, or this bare HTTP status."""
        self._scripted.append(failure)

    # -- what tests read ---------------------------------------------------------------
    # -- the API ------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data(as_text=True)
        with self._lock:
            response = self._handle(request, raw)
            self._log.append(self._entry(request, raw, response, force_json=True))
        return response(environ, start_response)

    def _handle(self, request: Request, raw: str) -> Response:
        if self._scripted and isinstance(self._scripted[0], int):
            return Response("<html>Bad gateway</html>", status=self._scripted.pop(0))
        if request.path == self.data_path and request.method == "POST":
            return self._data_api(raw)
        if request.path != self.base_path or request.method != "POST":
            return Response("Not found", status=404)
        try:
            body = json.loads(raw)
        except ValueError:
            return self._reply(
                None,
                error=RpcError(-32700, "Invalid JSON was received by the server.", "parse_error"),
            )
        request_id = body.get("id") if isinstance(body, dict) else None
        try:
            result = self._dispatch(body, request.remote_addr or "")
        except RpcError as exc:
            return self._reply(request_id, error=exc)
        return self._reply(request_id, result=result)

    def _reply(
        self, request_id: Any, *, result: Any = None, error: RpcError | None = None
    ) -> Response:
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        if error is None:
            body["result"] = {"data": result, "metadata": {"limits": dict(self.limits)}}
        else:
            data: dict[str, Any] = {
                "mnemonic": error.mnemonic,
                "field": error.field,
                "value": error.value,
                "params": error.params or {},
                "extended_helper": None,
            }
            if error.mnemonic not in NO_METADATA:
                data["metadata"] = error.metadata or {"limits": dict(self.limits)}
            body["error"] = {"code": error.code, "message": error.message, "data": data}
        return Response(json.dumps(body), status=200, mimetype="application/json")

    def _dispatch(self, body: Any, address: str) -> dict[str, Any]:
        if isinstance(body, list):
            raise RpcError(
                -32099, "Batch operations not supported", "batch_opreations_not_supported"
            )
        if not isinstance(body, dict) or body.get("jsonrpc") != "2.0" or not body.get("method"):
            raise RpcError(
                -32600,
                "Invalid Request The JSON sent is not a valid Request object",
                "invalid_request",
            )
        if "id" not in body:
            raise RpcError(-32099, "Notifications not supported", "notifications_not_supported")
        if body["method"] != METHOD:
            raise RpcError(
                -32601, "The method does not exist / is not available", "method_not_found"
            )
        if self.whitelisted_ips is not None and address not in self.whitelisted_ips:
            raise RpcError(-32003, f"Your IP {address} is not whitelisted", "ip_not_whitelisted")
        params = body.get("params")
        if not isinstance(params, dict):
            raise RpcError(
                -32600,
                "Invalid Request The JSON sent is not a valid Request object",
                "invalid_request",
            )
        self._authenticate(params.get("access_token"))
        if self._scripted:
            failure = self._scripted.pop(0)
            assert isinstance(failure, RpcError)
            raise failure
        if self._limited:
            self._limit_exceeded(*self._limited.pop(0))
        return self._start_employee_call(params)

    def _authenticate(self, token: Any) -> None:
        state = self.tokens.get(token) if isinstance(token, str) else None
        if state is None:
            raise RpcError(-32001, "Access token is invalid", "access_token_invalid")
        if state == "expired":
            raise RpcError(-32001, "Access token has been expired", "access_token_expired")
        if state == "blocked":
            raise RpcError(-32001, "Access token has been blocked", "access_token_blocked")

    def _limit_exceeded(self, limit_type: str, reset_s: float) -> None:
        limit = self.limits[f"{limit_type}_limit"]
        limits = {**self.limits, f"{limit_type}_remaining": 0, f"{limit_type}_reset": reset_s}
        raise RpcError(
            -32029,
            f"Limit per {limit_type} has been exceeded. Value of current limit per "
            f"{limit_type} is {limit}",
            "limit_exceeded",
            params={"limit_type": limit_type, "limit_max_value": limit},
            metadata={"limits": limits},
        )

    def _start_employee_call(self, params: dict[str, Any]) -> dict[str, Any]:
        unexpected = sorted(set(params) - PARAMS)
        if unexpected:
            raise RpcError(
                -32602,
                "Unexpected method parameter(s)",
                "unexpected_parameters",
                field=unexpected[0],
            )
        employee = params.get("employee")
        for name, present in (
            ("first_call", "first_call" in params),
            ("virtual_phone_number", "virtual_phone_number" in params),
            ("contact", "contact" in params),
            ("employee", isinstance(employee, dict)),
            ("employee.id", isinstance(employee, dict) and "id" in employee),
        ):
            if not present:
                raise RpcError(
                    -32602,
                    "The required parameter has been missed",
                    "required_parameter_missed",
                    field=name,
                )
        assert isinstance(employee, dict)
        for name, value, kind in (
            ("virtual_phone_number", params["virtual_phone_number"], str),
            ("contact", params["contact"], str),
            ("employee.id", employee["id"], int),
        ):
            if not isinstance(value, kind) or isinstance(value, bool):
                raise RpcError(
                    -32602,
                    "Data supplied is of wrong type",
                    "data_type_error",
                    field=name,
                    value=value,
                )
        if params["first_call"] not in ("employee", "contact"):
            raise RpcError(
                -32602,
                "Invalid parameter value",
                "invalid_parameter_value",
                field="first_call",
                value=params["first_call"],
            )
        if params.get("direction", "out") not in ("in", "out"):
            raise RpcError(
                -32602,
                "Invalid parameter value",
                "invalid_parameter_value",
                field="direction",
                value=params["direction"],
            )
        contact, virtual = params["contact"], params["virtual_phone_number"]
        if not (contact.isdigit() and 10 <= len(contact) <= 15):
            raise RpcError(
                -32602,
                "Invalid parameter value",
                "invalid_parameter_value",
                field="contact",
                value=contact,
            )
        if virtual not in self.virtual_numbers:
            raise RpcError(
                -32007,
                f"Virtual phone number {virtual} not found. It is not your virtual phone number.",
                "virtual_phone_number_not_found",
            )
        if employee["id"] not in self.employees:
            raise RpcError(
                -32602,
                f"Employee with id {employee['id']} not found. It is not your employee.",
                "employee_not_found",
            )
        if not self.employees[employee["id"]]:
            raise RpcError(
                -32602, "The phone number does not exist or inactive", "no_active_phone_number"
            )
        if contact in self.virtual_numbers:
            raise RpcError(
                -32602,
                "Parameter `contact` can not contain own virtual phone number",
                "own_virtual_phone_number_not_allowed",
            )
        if contact in self.blacklist:
            raise RpcError(
                -32002,
                f"The contact {contact} has been found in the blacklist",
                "contact_in_blacklist",
            )
        for key in ("minute_remaining", "day_remaining"):
            self.limits[key] -= 1  # points are charged only for a success
        session_id = next(self._session_ids)
        self.calls.append({"call_session_id": session_id, **params})
        return {"call_session_id": session_id}

    # -- the Data API ---------------------------------------------------------------------
    def _data_api(self, raw: str) -> Response:
        try:
            body = json.loads(raw)
        except ValueError:
            return self._reply(
                None,
                error=RpcError(-32700, "Invalid JSON was received by the server.", "parse_error"),
            )
        request_id = body.get("id") if isinstance(body, dict) else None
        try:
            if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
                raise RpcError(
                    -32600,
                    "Invalid Request The JSON sent is not a valid Request object",
                    "invalid_request",
                )
            if body.get("method") != DATA_METHOD:
                raise RpcError(
                    -32601, "The method does not exist / is not available", "method_not_found"
                )
            params = body.get("params") if isinstance(body.get("params"), dict) else {}
            self._authenticate(params.get("access_token"))
            result = self._get_employees(params)
        except RpcError as exc:
            return self._reply(request_id, error=exc)
        return self._reply(request_id, result=result)

    def _get_employees(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        fields = params.get("fields") or sorted(EMPLOYEE_FIELDS)
        unknown = [f for f in fields if f not in EMPLOYEE_FIELDS]
        if unknown:
            raise RpcError(
                -32602, "Invalid parameter value", "invalid_parameter_value",
                field="fields", value=unknown[0],
            )  # fmt: skip
        limit, offset = int(params.get("limit", 1000)), int(params.get("offset", 0))
        rows = [self.profiles[i] for i in sorted(self.profiles)][offset : offset + limit]
        return [{k: row.get(k) for k in fields} for row in rows]
