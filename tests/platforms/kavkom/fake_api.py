"""A fake Kavkom PBX API, over real HTTP, for click-to-call.

Reproduces what *Kavkom API Documentation* (https://help.kavkom.com/en/api-integration/kavkom-api/)
says of ``POST /api/pbx/v1/active_call/call``:

- "Authentication": the token in ``X-API-TOKEN``, linked to domains and to authorized
  routes; ``domain_uuid`` (a UUID v4) in the JSON body of a POST. A token not authorized
  for the route or not linked to the domain "is rejected";
- "Start a call, or click-to-call": required ``domain_uuid``, ``src``, ``destination``;
  the success body with ``call_uuid`` and ``recording``;
- "Error codes & troubleshooting": the PBX error envelope (``error``, ``message``,
  ``validationErrors``), 422 "src invalid" for an extension not on the domain, 422 with the
  switch's "-ERR ..." text when the switch rejects the call.

The documentation gives no status or body for a rejected token: an unknown token gets 401 and a
token without the route or domain 403, both in the PBX error envelope (constructed).

And ``GET /api/pbx/v1/extension/list`` ("Managing calls - PBX API / List extensions"):
``domain_uuid`` in the query string (a GET), ``limit`` (1 to 5000, default 15) and ``page``;
the PBX envelope ``{"data": [...], "success": true, "message": ...}`` whose rows have the
documented example's fields (``extension_uuid``, ``domain_uuid``, ``extension``,
``password``, ``user_context``, ``enabled``) plus ``description`` and
``outbound_caller_id_name``, two of the documented sort columns. Tests name extensions
with ``describe``.

Tests steer it with ``switch_rejects`` (the switch's verdict for an extension),
``fail_next`` (a scripted HTTP failure), ``stall_next`` (an answer that comes too late) and
read every request with ``requests()``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.fake_server import FakeHttpServer

CALL_PATH = "/api/pbx/v1/active_call/call"
ROUTE = "active_call/call"
LIST_PATH = "/api/pbx/v1/extension/list"
LIST_ROUTE = "extension/list"


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _pbx_error(status: int, message: str, **extra: Any) -> Response:
    # Kavkom docs, "Error codes & troubleshooting / Error format", PBX API.
    return _json(status, {"error": True, "message": message, **extra})


class FakeKavkom(FakeHttpServer):
    """``with FakeKavkom(token=..., domain_uuid=..., extensions=["901"]) as fake:``."""

    def __init__(
        self,
        *,
        token: str,
        domain_uuid: str,
        extensions: list[str] | tuple[str, ...] = ("901",),
    ):
        self.domain_uuid = domain_uuid
        self.extensions = set(extensions)
        # token → (linked domains, authorized routes): docs, "API token X-API-TOKEN & domain_uuid".
        self.tokens: dict[str, tuple[set[str], set[str]]] = {
            token: ({domain_uuid}, {ROUTE, LIST_ROUTE})
        }
        self.descriptions: dict[str, str] = {}  # extension → description (the person)
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._switch: dict[str, str] = {}
        self._failures: list[tuple[int, dict[str, Any] | None, str | None]] = []
        self._stall: float | None = None

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.root_url

    # -- what tests arrange ----------------------------------------------------------
    def add_token(self, token: str, *, domains: set[str], routes: set[str]) -> None:
        self.tokens[token] = (domains, routes)

    def switch_rejects(self, extension: str, cause: str) -> None:
        """The switch answers "-ERR <cause>" for this extension (e.g. USER_NOT_REGISTERED)."""
        self._switch[extension] = f"-ERR {cause}"

    def fail_next(
        self, status: int, body: dict[str, Any] | None = None, *, retry_after: str | None = None
    ) -> None:
        self._failures.append((status, body, retry_after))

    def describe(self, extension: str, description: str) -> None:
        """An extension of the domain, described (in Kavkom's admin) with its user's name."""
        self.extensions.add(extension)
        self.descriptions[extension] = description

    def stall_next(self, seconds: float) -> None:
        """The next call is placed, but the answer comes after ``seconds``."""
        self._stall = seconds

    # -- what tests read ---------------------------------------------------------------
    def placed(self) -> list[dict[str, Any]]:
        """The calls the PBX originated."""
        return [r for r in self.requests() if r["status"] == 200]

    # -- the API ------------------------------------------------------------------------
    def _handle(self, request: Request) -> Response:
        if self._failures:
            status, body, retry_after = self._failures.pop(0)
            response = (
                _pbx_error(status, "scripted failure") if body is None else _json(status, body)
            )
            if retry_after is not None:
                response.headers["Retry-After"] = retry_after
            return response
        if request.path == LIST_PATH and request.method == "GET":
            return self._list_extensions(request)
        if request.path != CALL_PATH or request.method != "POST":
            return _pbx_error(404, "Not found")
        grant = self.tokens.get(request.headers.get("X-API-TOKEN", ""))
        if grant is None:
            return _pbx_error(401, "Unauthenticated.")  # constructed, see module docstring
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _pbx_error(422, "Model is not valid", validationErrors={"body": "JSON required"})
        problems = {
            name: f"The {name} field is required."
            for name in ("domain_uuid", "src", "destination")
            if not body.get(name)
        }
        if problems:
            return _pbx_error(422, "Model is not valid", validationErrors=problems)
        domains, routes = grant
        if body["domain_uuid"] not in domains or ROUTE not in routes:
            return _pbx_error(403, "This token is not authorized for this route or domain.")
        src = str(body["src"])
        if src not in self.extensions:
            return _pbx_error(422, "src invalid")  # seed: '422 + "src invalid"'
        if src in self._switch:
            return _pbx_error(422, self._switch[src])  # seed: '422 + switch text -ERR …'
        if self._stall is not None:
            time.sleep(self._stall)
            self._stall = None
        # Kavkom docs, "Start a call, or click-to-call", response example.
        return _json(
            200,
            {
                "success": True,
                "message": "Action completed successfully",
                "call_uuid": str(uuid.uuid4()),
                "recording": "+OK",
            },
        )

    def _list_extensions(self, request: Request) -> Response:
        grant = self.tokens.get(request.headers.get("X-API-TOKEN", ""))
        if grant is None:
            return _pbx_error(401, "Unauthenticated.")  # constructed, see module docstring
        domain = request.args.get("domain_uuid")
        if not domain:
            return _pbx_error(
                422,
                "Model is not valid",
                validationErrors={"domain_uuid": "The domain uuid field is required."},
            )
        domains, routes = grant
        if domain not in domains or LIST_ROUTE not in routes:
            return _pbx_error(403, "This token is not authorized for this route or domain.")
        try:
            limit = int(request.args.get("limit", 15))
            page = int(request.args.get("page", 1))
        except ValueError:
            return _pbx_error(422, "Model is not valid", validationErrors={"limit": "integer"})
        if not 1 <= limit <= 5000 or page < 1:
            return _pbx_error(422, "Model is not valid", validationErrors={"limit": "1 to 5000"})
        rows = [
            {
                # Kavkom docs, "List extensions", response example; the UUID is derived.
                "extension_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{domain}/{ext}")),
                "domain_uuid": domain,
                "extension": ext,
                "password": "aB3xY9zK",
                "user_context": "client.kavkom.com",
                "enabled": "true",
                "description": self.descriptions.get(ext, ""),
                "outbound_caller_id_name": "",
            }
            for ext in sorted(self.extensions)
        ]
        chunk = rows[(page - 1) * limit : page * limit]
        return _json(
            200, {"data": chunk, "success": True, "message": "Action completed successfully"}
        )
