"""A fake Kwebbl: the Realtime API and its OAuth 2 authorization server, over real HTTP.

Reproduces what Kwebbl's *Realtime API* document (API 1.0.0, revision 17, 21 August 2019;
cited by title and section, its public URL is not confirmed: see
tests/platforms/kwebbl/fixtures/SOURCES.md) documents.

Realtime API (``fake.url``, base path ``/v100``):

- "Basics": base URL ``/v100/``, JSON, OAuth 2 Bearer tokens ("401 - Invalid Grant" when a
  token is invalid or expired);
- "Placing a new call": ``from`` (optional, default the token's owner) and ``to``, each with
  ``number`` or ``extension_id``; 202 Accepted with no body; the "Limitations": no call
  between 2 external numbers, and ``calls.create.personal`` only from the token owner;
- "Subscribing to Realtime Events": ``GET /subscriptions`` (a JSON array),
  ``GET /subscriptions/{id}``, ``POST /subscriptions`` (defaults filled in, the just created
  subscription in the body), ``DELETE /subscriptions/{id}`` (``{"ok": true}``); no modify;
  scopes ``calls.events``, ``.personal``, ``.presence`` (presence: the four basic events in
  mode ``presence`` only);
- "List of Extensions": ``GET /extensions``, a JSON array of ``{id, name, number, type,
  external_number (dialplans only)}``; users need the ``company.users`` scope and
  dialplans ``company.dialplans`` (403 ``access_denied`` with neither);
- the error object ``{status_code, error_code, message}`` with 400 ``validation``,
  401 ``invalid_grant``, 403 ``access_denied``, 404 ``entity_not_exist``; the ``message``
  texts are the document's descriptions of each code;
- the agent patterns of "Receiving events": ``number`` ``\\+?\\d{3,15}``, ``extension_id``
  ``[a-f0-9]{32}``.

Authorization server (``fake.auth_url``, the host's root; "Authorization Code Grant Flow"):

- ``GET /authorize?response_type=code&client_id&redirect_uri&state&scope``: invalid
  parameters are shown to the user, never redirected; otherwise the user consents at once
  (``deny_next`` scripts a refusal) and the browser goes back to
  ``{redirect_uri}?code={code}&state={state}`` or ``?error=access_denied&state={state}``;
- ``POST /token`` with a JSON body; the client authenticates with HTTP Basic *or* with
  ``client_id``/``client_secret`` in the body, "using both ... is not allowed" (400
  ``invalid_request``); a Basic failure carries a ``WWW-Authenticate`` header;
- ``grant_type=authorization_code`` (``code``, ``redirect_uri`` required, equal to the one
  given to /authorize; a code works once) and ``grant_type=refresh_token``: "any previously
  acquired access or refresh token will be invalidated right after requesting these new
  tokens", so a refresh token works once and an old one gets 401 ``invalid_grant``;
- the response ``{access_token, refresh_token, expires_in, token_type: "Bearer"}``, with
  ``expires_in`` scripted by ``fake.expires_in``; an access token stops working when it
  expires; regenerating the client secret "will make all previously acquired access and
  refresh tokens invalid".

Tests issue and revoke tokens (``issue_token``, ``revoke``), add extensions, script
failures (``fail_next``) and read every request with ``requests()``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from werkzeug.wrappers import Request, Response

from tests.fake_server import FakeHttpServer

NUMBER = re.compile(r"\+?\d{3,15}")
EXTENSION_ID = re.compile(r"[a-f0-9]{32}")
# Realtime API doc, "Available Scopes".
SCOPES = {
    "user.info",
    "company.dialplans",
    "company.users",
    "calls.events",
    "calls.events.personal",
    "calls.events.presence",
    "calls.manage",
    "calls.manage.personal",
    "calls.create",
    "calls.create.personal",
}
EVENT_SCOPES = {"calls.events", "calls.events.personal", "calls.events.presence"}
# Realtime API doc, "Available events"; the default subscription gets the first four.
EVENT_TYPES = {
    "created",
    "ringing",
    "answered",
    "terminated",
    "transferred",
    "bridged",
    "holding",
    "resume",
    "start_recording",
    "stop_recording",
}
BASIC_EVENTS = ["created", "ringing", "answered", "terminated"]


def _error(status: int, error_code: str, message: str) -> Response:
    # Doc, "Placing a new call": "The body may contain a JSON object describing the error".
    body = {"status_code": status, "error_code": error_code, "message": message}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _invalid(message: str) -> Response:
    return _error(400, "validation", message)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _oauth_error(status: int, error: str, description: str, *, basic: bool = False) -> Response:
    """Doc, step e: ``error`` and ``error_description``; Basic failures repeat them in a header."""
    response = _json({"error": error, "error_description": description}, status)
    if basic:
        response.headers["WWW-Authenticate"] = (
            f'Basic realm="kwebbl", error="{error}", error_description="{description}"'
        )
    return response


def _with_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


class FakeKwebbl(FakeHttpServer):
    """``with FakeKwebbl() as fake:``; ``fake.url`` is the API base URL, ``/v100`` included,
    ``fake.auth_url`` the authorization server (``/authorize``, ``/token``)."""

    def __init__(
        self,
        base_path: str = "/v100",
        *,
        client_id: str = "callhook-test-client",
        client_secret: str | None = None,
        redirect_uri: str | None = None,
    ) -> None:
        self.base_path = base_path
        self.extensions: dict[str, dict[str, str]] = {}  # extension_id → {number, type}
        # access token → {owner, scope, grant?, expires_at? (monotonic)}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.subscriptions: dict[str, dict[str, Any]] = {}
        # The OAuth app as created in the Company Panel.
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(18)
        self.registered_redirect_uri = redirect_uri  # None: any redirect_uri is accepted
        # What tests script.
        self.expires_in = 900  # the document's example
        self.token_delay = 0.0  # seconds /token takes, so concurrent refreshes overlap
        self.consenting_user: str | None = None  # the extension of the user who consents
        self.subscription_created_status = 201  # seed: "200 OK, 201 Created or 202 Accepted"
        self._denials: list[tuple[str, str | None]] = []
        self._codes: dict[str, dict[str, Any]] = {}
        self._refresh_tokens: dict[str, str] = {}  # refresh token → grant id
        self._grants: dict[str, dict[str, Any]] = {}  # grant id → {scope, owner, access, refresh}
        self.issued: list[dict[str, str]] = []  # every pair handed out, oldest first
        self._lock = threading.Lock()
        self._state = threading.RLock()
        self._log: list[dict[str, Any]] = []
        self._failures: list[tuple[int, dict[str, Any] | None, str | None]] = []

    # -- lifecycle -------------------------------------------------------------------
    @property
    def auth_url(self) -> str:
        """The authorization server: ``/authorize`` and ``/token`` hang under it."""
        return self.root_url

    @property
    def url(self) -> str:
        return self.auth_url + self.base_path

    # -- what tests arrange ----------------------------------------------------------
    def add_extension(self, number: str, kind: str = "user", *, name: str = "") -> str:
        """A user or dialplan extension; returns its 32-hex id. ``name``: the user's first and
        last name, or the dialplan's name, as ``GET /extensions`` shows it."""
        extension_id = secrets.token_hex(16)
        self.extensions[extension_id] = {"number": number, "type": kind, "name": name}
        return extension_id

    def issue_token(self, *, owner: str, scope: str = "calls.create") -> str:
        token = secrets.token_urlsafe(24)
        with self._state:
            self.tokens[token] = {"owner": owner, "scope": scope}
        return token

    def revoke(self, token: str) -> None:
        """The token expires: Kwebbl answers 401 invalid_grant from now on."""
        with self._state:
            self.tokens.pop(token, None)

    def fail_next(
        self, status: int, body: dict[str, Any] | None = None, path: str | None = None
    ) -> None:
        """The next request (to ``path`` only, when given) gets this answer instead."""
        self._failures.append((status, body, path))

    def deny_next(self, error: str = "access_denied", description: str | None = None) -> None:
        """The next user at /authorize does not grant access."""
        self._denials.append((error, description))

    def refresh_elsewhere(self) -> dict[str, str]:
        """Someone else spends the newest refresh token (another install with a copy of it):
        the pair callhook holds stops working, as the document says a refresh does."""
        with self._state:
            grant_id = self.issued[-1]["grant"]
            return self._issue_pair(grant_id)

    def regenerate_client_secret(self) -> str:
        """Doc, step e: a new secret "will make all previously acquired access and refresh
        tokens invalid"."""
        with self._state:
            self.client_secret = secrets.token_urlsafe(18)
            for grant in self._grants.values():
                self.tokens.pop(grant["access"], None)
                self._refresh_tokens.pop(grant["refresh"], None)
            return self.client_secret

    # -- what tests read ---------------------------------------------------------------
    def token_requests(self, grant_type: str | None = None) -> list[dict[str, Any]]:
        """The requests /token received (optionally one grant type's), oldest first."""
        return [
            r
            for r in self.requests()
            if r["path"] == "/token"
            and (grant_type is None or (r["json"] or {}).get("grant_type") == grant_type)
        ]

    def is_valid(self, access_token: str) -> bool:
        with self._state:
            return self._grant_of(access_token) is not None

    @property
    def current(self) -> dict[str, str]:
        """The newest pair handed out: ``{access_token, refresh_token, grant}``."""
        return self.issued[-1]

    # -- the server ------------------------------------------------------------------------
    def _scripted_failure(self, path: str) -> Response | None:
        for index, (status, body, only) in enumerate(self._failures):
            if only is None or only == path:
                del self._failures[index]
                payload = json.dumps(body) if body is not None else ""
                return Response(payload, status=status, mimetype="application/json")
        return None

    def _handle(self, request: Request) -> Response:
        failure = self._scripted_failure(request.path)
        if failure is not None:
            return failure
        path, method = request.path, request.method
        if path == "/authorize" and method == "GET":
            return self._authorize(request)
        if path == "/token" and method == "POST":
            return self._token(request)
        if path == f"{self.base_path}/calls" and method == "POST":
            return self._place_call(request)
        if path == f"{self.base_path}/extensions" and method == "GET":
            return self._list_extensions(request)
        if path == f"{self.base_path}/subscriptions" and method in ("GET", "POST"):
            return self._subscriptions(request)
        prefix = f"{self.base_path}/subscriptions/"
        if path.startswith(prefix) and method in ("GET", "DELETE"):
            return self._subscription(request, path[len(prefix) :])
        return _error(404, "entity_not_exist", "Not found")

    # -- authorization server ----------------------------------------------------------------
    def _authorize(self, request: Request) -> Response:
        args = request.args
        problem = None
        if args.get("response_type") != "code":
            problem = "response_type must be code"
        elif args.get("client_id") != self.client_id:
            problem = "unknown client_id"
        elif not args.get("redirect_uri"):
            problem = "redirect_uri is required"
        elif self.registered_redirect_uri and args["redirect_uri"] != self.registered_redirect_uri:
            problem = "redirect_uri is not the one registered for this application"
        else:
            unknown = [s for s in args.get("scope", "").split() if s not in SCOPES]
            if unknown:
                problem = f"unknown scope {unknown[0]}"
        if problem:
            # Doc: "the Authorization Server will inform Resource Owner (user) about the
            # error but will not redirect back to client callback".
            return Response(
                f"<p>Invalid authorization request: {problem}</p>", status=400, mimetype="text/html"
            )
        redirect_uri = args["redirect_uri"]
        back: dict[str, str] = {}
        if self._denials:
            error, description = self._denials.pop(0)
            back["error"] = error
            if description:
                back["error_description"] = description
        else:
            code = secrets.token_urlsafe(24)
            with self._state:
                self._codes[code] = {
                    "client_id": self.client_id,
                    "redirect_uri": redirect_uri,
                    "scope": args.get("scope", ""),
                    "owner": self.consenting_user,
                    "used": False,
                }
            back["code"] = code
        if "state" in args:
            back["state"] = args["state"]
        return Response("", status=302, headers={"Location": _with_query(redirect_uri, back)})

    def _client_problem(self, request: Request, body: dict[str, Any]) -> Response | None:
        header = request.headers.get("Authorization")
        in_body = "client_id" in body or "client_secret" in body
        if header is not None and in_body:
            return _oauth_error(
                400, "invalid_request", "Request includes multiple client credentials"
            )
        if header is not None:
            scheme, _, encoded = header.partition(" ")
            try:
                client_id, _, secret = (
                    base64.b64decode(encoded, validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                client_id, secret = "", ""
            if scheme != "Basic" or (client_id, secret) != (self.client_id, self.client_secret):
                return _oauth_error(
                    401, "invalid_client", "Client authentication failed", basic=True
                )
            return None
        if (body.get("client_id"), body.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        return None

    def _token(self, request: Request) -> Response:
        if self.token_delay:
            time.sleep(self.token_delay)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            # Doc, step d: "parameters as JSON in the request body".
            return _oauth_error(400, "invalid_request", "The request body must be JSON")
        refused = self._client_problem(request, body)
        if refused is not None:
            return refused
        with self._state:
            grant_type = body.get("grant_type")
            if grant_type == "authorization_code":
                if not body.get("code") or not body.get("redirect_uri"):
                    return _oauth_error(
                        400, "invalid_request", "code and redirect_uri are required"
                    )
                code = self._codes.get(body["code"])
                if code is None or code["used"] or code["redirect_uri"] != body["redirect_uri"]:
                    return _oauth_error(401, "invalid_grant", "Authorization code is invalid")
                code["used"] = True
                grant_id = secrets.token_hex(8)
                self._grants[grant_id] = {
                    "scope": code["scope"],
                    "owner": code["owner"],
                    "access": "",
                    "refresh": "",
                }
                pair = self._issue_pair(grant_id)
            elif grant_type == "refresh_token":
                grant_id = self._refresh_tokens.get(str(body.get("refresh_token")))
                if grant_id is None:
                    return _oauth_error(401, "invalid_grant", "Refresh token is invalid")
                pair = self._issue_pair(grant_id)
            else:
                return _oauth_error(400, "invalid_request", "grant_type is invalid")
        return _json(
            {
                "access_token": pair["access_token"],
                "refresh_token": pair["refresh_token"],
                "expires_in": self.expires_in,
                "token_type": "Bearer",
            }
        )

    def _issue_pair(self, grant_id: str) -> dict[str, str]:
        """A new pair for the grant; the previous one stops working (doc, "Restoring")."""
        grant = self._grants[grant_id]
        self.tokens.pop(grant["access"], None)
        self._refresh_tokens.pop(grant["refresh"], None)
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        grant.update(access=access, refresh=refresh)
        self.tokens[access] = {
            "owner": grant["owner"],
            "scope": grant["scope"],
            "grant": grant_id,
            "expires_at": time.monotonic() + self.expires_in,
        }
        self._refresh_tokens[refresh] = grant_id
        pair = {"access_token": access, "refresh_token": refresh, "grant": grant_id}
        self.issued.append(pair)
        return pair

    # -- Realtime API -------------------------------------------------------------------------
    def _grant_of(self, token: str) -> dict[str, Any] | None:
        grant = self.tokens.get(token)
        if grant is None or grant.get("expires_at", float("inf")) < time.monotonic():
            return None
        return grant

    def _bearer(self, request: Request) -> dict[str, Any] | Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._state:
            grant = self._grant_of(token) if scheme == "Bearer" else None
        if grant is None:
            return _error(401, "invalid_grant", "Authorization grant is invalid or expired")
        return grant

    def _place_call(self, request: Request) -> Response:
        grant = self._bearer(request)
        if isinstance(grant, Response):
            return grant
        scopes = set(grant["scope"].split())
        if not scopes & {"calls.create", "calls.create.personal"}:
            return _error(403, "access_denied", "No permission to access the required scopes")
        personal = "calls.create" not in scopes
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _invalid("The body must be a JSON object")
        source = body.get("from", {"extension_id": grant["owner"]})
        target = body.get("to")
        for name, agent in (("from", source), ("to", target)):
            problem = self._agent_problem(name, agent)
            if problem:
                return _invalid(problem)
        if personal and self._extension(source) != grant["owner"]:
            return _error(403, "access_denied", "No permission to access the required scopes")
        if self._extension(source) is None and self._extension(target) is None:
            # Doc, "Limitations": an anti-fraud measure.
            return _invalid("Creating calls between 2 external numbers is not allowed")
        self.calls.append({"from": source, "to": target})
        return Response("", status=202)  # Doc: "202 Accepted", no body.

    def _list_extensions(self, request: Request) -> Response:
        grant = self._bearer(request)
        if isinstance(grant, Response):
            return grant
        scopes = set(grant["scope"].split())
        kinds = {k for k, scope in (("user", "company.users"), ("dialplan", "company.dialplans"))
                 if scope in scopes}  # fmt: skip
        if not kinds:
            return _error(403, "access_denied", "No permission to access the required scopes")
        with self._state:
            rows = [
                {"id": extension_id, "name": ext.get("name", ""), "number": ext["number"],
                 "type": ext["type"]}
                for extension_id, ext in self.extensions.items()
                if ext["type"] in kinds
            ]  # fmt: skip
        return _json(rows)

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

    def _event_scopes(self, request: Request) -> set[str] | Response:
        grant = self._bearer(request)
        if isinstance(grant, Response):
            return grant
        scopes = set(grant["scope"].split()) & EVENT_SCOPES
        if not scopes:
            return _error(403, "access_denied", "No permission to access the required scopes")
        return scopes

    def _subscriptions(self, request: Request) -> Response:
        scopes = self._event_scopes(request)
        if isinstance(scopes, Response):
            return scopes
        if request.method == "GET":
            with self._state:
                return _json(list(self.subscriptions.values()))
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _invalid("The body must be a JSON object")
        problem, subscription = self._new_subscription(body)
        if problem:
            return _invalid(problem)
        if scopes == {"calls.events.presence"} and (
            subscription["mode"] != "presence"
            or not set(subscription["event_types"]) <= set(BASIC_EVENTS)
        ):
            # Doc: presence "Only allows events created, ringing, answered, terminated and
            # mode presence".
            return _error(403, "access_denied", "No permission to access the required scopes")
        with self._state:
            self.subscriptions[subscription["id"]] = subscription
        return _json(subscription, self.subscription_created_status)

    def _new_subscription(self, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        event_types = body.get("event_types", BASIC_EVENTS)
        if not (
            isinstance(event_types, list)
            and event_types
            and all(e == "*" or e in EVENT_TYPES for e in event_types)
        ):
            return "event_types is invalid", {}
        mode = body.get("mode", "presence")
        if mode not in ("presence", "detailed"):
            return "mode is invalid", {}
        url = body.get("callback_url")
        if not (isinstance(url, str) and re.match(r"https?://[^/?#]+", url)):
            # "This URL should be a full path, including protocol and domain."
            return "callback_url is invalid", {}
        if body.get("callback_content_type", "application/json") != "application/json":
            return "callback_content_type is invalid", {}
        agents = []
        for agent in body.get("agents", [{"number": "*"}]):
            if not isinstance(agent, dict) or agent.get("field", "*") not in ("*", "from", "to"):
                return "agents is invalid", {}
            field = agent.get("field", "*")
            number, extension_id = agent.get("number"), agent.get("extension_id")
            # Doc, "Notes about agents[] fields".
            if not number and not extension_id:
                field = "*"
            if number and extension_id:
                number = "*"
            agents.append(
                {"field": field, "extension_id": extension_id or "*", "number": number or "*"}
            )
        return None, {
            "id": secrets.token_hex(16),
            "event_types": event_types,
            "agents": agents,
            "mode": mode,
            "callback_url": url,
            "callback_content_type": "application/json",
        }

    def _subscription(self, request: Request, subscription_id: str) -> Response:
        scopes = self._event_scopes(request)
        if isinstance(scopes, Response):
            return scopes
        with self._state:
            subscription = self.subscriptions.get(subscription_id)
            if subscription is None:
                return _error(
                    404, "entity_not_exist", "The subscription with the specified ID does not exist"
                )
            if request.method == "GET":
                return _json(subscription)
            del self.subscriptions[subscription_id]
        return _json({"ok": True})
