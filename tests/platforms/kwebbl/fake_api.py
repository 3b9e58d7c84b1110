"""A fake Kwebbl Realtime API, over real HTTP, for placing calls.

Reproduces what the seed (kwebbl-realtime-api.txt) documents for ``POST /calls``:

- "Basics": base URL ``/v100/``, JSON, OAuth 2 Bearer tokens ("401 - Invalid Grant" when a
  token is invalid or expired);
- "Placing a new call": ``from`` (optional, default the token's owner) and ``to``, each with
  ``number`` or ``extension_id``; 202 Accepted with no body; the "Limitations": no call
  between 2 external numbers, and ``calls.create.personal`` only from the token owner;
- the error object ``{status_code, error_code, message}`` with 400 ``validation``,
  401 ``invalid_grant``, 403 ``access_denied``; the ``message`` texts are the seed's
  descriptions of each code;
- the agent patterns of "Receiving events": ``number`` ``\\+?\\d{3,15}``, ``extension_id``
  ``[a-f0-9]{32}``.

Tests issue and revoke tokens (``issue_token``, ``revoke``), add extensions, script
failures (``fail_next``) and read every request with ``requests()``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

NUMBER = re.compile(r"\+?\d{3,15}")
EXTENSION_ID = re.compile(r"[a-f0-9]{32}")


def _error(status: int, error_code: str, message: str) -> Response:
    # Seed, "Placing a new call": "The body may contain a JSON object describing the error".
    body = {"status_code": status, "error_code": error_code, "message": message}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _invalid(message: str) -> Response:
    return _error(400, "validation", message)


class FakeKwebbl:
    """``with FakeKwebbl() as fake:``; ``fake.url`` is the base URL, ``/v100`` included."""

    def __init__(self, base_path: str = "/v100") -> None:
        self.base_path = base_path
        self.extensions: dict[str, dict[str, str]] = {}  # extension_id → {number, type}
        self.tokens: dict[str, dict[str, str]] = {}  # token → {scope, owner}
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._failures: list[tuple[int, dict[str, Any] | None]] = []
        self._server: Any = None

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> FakeKwebbl:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        # A short poll interval: shutdown() waits for it at every test's end.
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{self.base_path}"

    # -- what tests arrange ----------------------------------------------------------
    def add_extension(self, number: str, kind: str = "user") -> str:
        """A user or dialplan extension; returns its 32-hex id."""
        extension_id = secrets.token_hex(16)
        self.extensions[extension_id] = {"number": number, "type": kind}
        return extension_id

    def issue_token(self, *, owner: str, scope: str = "calls.create") -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = {"owner": owner, "scope": scope}
        return token

    def revoke(self, token: str) -> None:
        """The token expires: Kwebbl answers 401 invalid_grant from now on."""
        self.tokens.pop(token, None)

    def fail_next(self, status: int, body: dict[str, Any] | None = None) -> None:
        self._failures.append((status, body))

    # -- what tests read ---------------------------------------------------------------
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    # -- the API ------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data(as_text=True)
        response = self._handle(request)
        with self._lock:
            self._log.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.args.to_dict(),
                    "headers": dict(request.headers),
                    "body": raw,
                    "json": request.get_json(silent=True),
                    "status": response.status_code,
                }
            )
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if self._failures:
            status, body = self._failures.pop(0)
            payload = json.dumps(body) if body is not None else ""
            return Response(payload, status=status, mimetype="application/json")
        if request.path != f"{self.base_path}/calls" or request.method != "POST":
            return _error(404, "entity_not_exist", "Not found")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self.tokens.get(token) if scheme == "Bearer" else None
        if grant is None:
            return _error(401, "invalid_grant", "Authorization grant is invalid or expired")
        if grant["scope"] not in ("calls.create", "calls.create.personal"):
            return _error(403, "access_denied", "No permission to access the required scopes")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _invalid("The body must be a JSON object")
        source = body.get("from", {"extension_id": grant["owner"]})
        target = body.get("to")
        for name, agent in (("from", source), ("to", target)):
            problem = self._agent_problem(name, agent)
            if problem:
                return _invalid(problem)
        if grant["scope"] == "calls.create.personal" and self._extension(source) != grant["owner"]:
            return _error(403, "access_denied", "No permission to access the required scopes")
        if self._extension(source) is None and self._extension(target) is None:
            # Seed, "Limitations": an anti-fraud measure.
            return _invalid("Creating calls between 2 external numbers is not allowed")
        self.calls.append({"from": source, "to": target})
        return Response("", status=202)  # Seed: "202 Accepted", no body.

    def _agent_problem(self, name: str, agent: Any) -> str | None:
        if not isinstance(agent, dict) or not (agent.get("number") or agent.get("extension_id")):
            return f"{name}: either number or extension_id should be set"
        number, extension_id = agent.get("number"), agent.get("extension_id")
        if number is not None and not (isinstance(number, str) and NUMBER.fullmatch(number)):
            return f"{name}.number is invalid"
        if extension_id is not None:
            if not (isinstance(extension_id, str) and EXTENSION_ID.fullmatch(extension_id)):
                return f"{name}.extension_id is invalid"
            if extension_id not in self.extensions:
                return f"{name}.extension_id does not exist"
        return None

    def _extension(self, agent: dict[str, str]) -> str | None:
        """The id of the internal extension an agent object names, None for an external one."""
        if agent.get("extension_id") in self.extensions:
            return agent["extension_id"]
        for extension_id, extension in self.extensions.items():
            if agent.get("number") == extension["number"]:
                return extension_id
        return None
