"""A fake KAZOO crossbar API, over real HTTP, for click-to-call ``connect``.

Reproduces, for ``GET|POST /v2/accounts/{ACCOUNT_ID}/clicktocall/{C2C_ID}/connect``:

- 2600Hz's *Click To Call* page
  (https://docs.2600hz.com/supported/applications/crossbar/doc/clicktocall/), "Execute the
  clicktocall with a supplied number": the contact in ``?contact=``, the non-blocking 202
  whose ``data`` is the originate request (its field names and layout, ``outbound_call_id``
  "c2c-{C2C_ID}-{RANDOM}" included), and the schema's ``auth_required`` (default true),
  ``extension`` and ``whitelist``;
- KAZOO's code (2600hz/kazoo, ``cb_clicktocall.erl``, same on 4.3 and master): the contact
  is read from the request data or the query string, percent-encoded
  (``kz_http_util:urlencode``, so "+" becomes "%2B") and normalized with the default
  ``e164_converters`` (``knm_converter_regex.erl``) before the whitelist is matched; a
  missing contact is a validation error, a whitelist miss a 400;
- crossbar's envelope and errors (``api_util:create_default_resp_envelope``,
  ``cb_context:add_system_error``): ``{"status": "error", "error": "<code>", "message": ...,
  "data": ...}`` with 401 invalid_credentials, 403 forbidden, 404 bad_identifier.

And the account's webhooks (``GET|PUT /v2/accounts/{ACCOUNT_ID}/webhooks``), after KAZOO's
``cb_webhooks.erl`` and ``applications/crossbar/doc/webhooks.md``: always authenticated;
the listing returns the ``crossbar_listing`` view's summaries (``id``, ``hook``, ``name``,
``uri``, ``enabled``, ``disable_reason`` when KAZOO disabled the hook) in pages of
``page_size``, with crossbar's opaque ``next_start_key`` (doc/basics.md, "Pagination"); a
create is validated against ``schemas/webhooks.json`` (``name``, ``uri``, ``hook`` required;
``http_verb`` get/post/put; ``format`` form-data/json) and answered 201 with the stored
document. ``version`` is the envelope's KAZOO version ("4.2.x" servers know no ``format``).

And the account's users and devices (``GET /v2/accounts/{ACCOUNT_ID}/users|devices``), after
``applications/crossbar/doc/users.md`` ("Fetch": summaries with ``id``, ``email``,
``first_name``, ``last_name``, ``username``, ``priv_level``, ``features``, ``timezone``)
and ``devices.md`` ("Fetch the device summary": ``id``, ``name``, ``enabled``, ``flags``,
``features``, ``owner_id``, ``device_type``, ``mac_address``, ``username``), paged as the
webhooks are.

Tests add click-to-call endpoints (``add_c2c``), hooks (``add_webhook``), users
(``add_user``) and devices (``add_device``), script failures
(``fail_next``), and read ``requests()``, the originated ``calls`` and ``webhooks``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.fake_server import FakeHttpServer

PATH = re.compile(r"^/v2/accounts/([^/]+)/clicktocall/([^/]+)/connect$")
WEBHOOKS_PATH = re.compile(r"^/v2/accounts/([^/]+)/webhooks$")
DIRECTORY_PATH = re.compile(r"^/v2/accounts/([^/]+)/(users|devices)$")
# GET /v2/webhooks on a 4.3 system: the hooks a webhook document may name, plus `all`.
AVAILABLE_HOOKS = (
    "all",
    "channel_answer",
    "channel_bridge",
    "channel_create",
    "channel_destroy",
    "notifications",
    "object",
    "parking",
    "sms",
    "mms",
)
# knm_converter_regex: ?DEFAULT_E164_CONVERTERS, in their order; the result is the prefix
# plus the last capture (or the whole match when there is no group), as
# maybe_convert_to_e164 builds it.
DEFAULT_E164_CONVERTERS = [
    (re.compile(r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$"), "+1"),
    (re.compile(r"^011(\d{5,})$|^00(\d{5,})$"), "+"),
    (re.compile(r"^[2-9]\d{7,}$"), "+"),
]
# Erlang's http_uri:encode/1 escapes exactly these.
RESERVED = set(";:@&=+$,/?#[]<>\"{}|\\^%' ")


def kazoo_contact(contact: str) -> str:
    """What cb_clicktocall:get_c2c_contact/1 makes of the contact it was given."""
    encoded = "".join(f"%{ord(ch):02X}" if ch in RESERVED else ch for ch in contact)
    if encoded.startswith("+"):
        return encoded
    for regex, prefix in DEFAULT_E164_CONVERTERS:
        match = regex.search(encoded)
        if match:
            captures = [match.group(0), *match.groups()]
            while captures and captures[-1] is None:
                captures.pop()  # Erlang leaves trailing unmatched groups out
            return prefix + (captures[-1] or "")
    return encoded


class FakeKazoo(FakeHttpServer):
    """``with FakeKazoo(account_id=..., auth_token=...) as fake:``; ``fake.url`` is the API root."""

    def __init__(
        self,
        *,
        account_id: str,
        auth_token: str,
        realm: str = "sip.example.com",
        version: str = "4.3.1",
        page_size: int = 50,
    ):
        self.account_id = account_id
        self.auth_token = auth_token
        self.realm = realm
        self.version = version
        self.page_size = page_size
        self.c2c: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._failures: list[int] = []

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.root_url

    # -- what tests arrange ----------------------------------------------------------
    def add_c2c(
        self,
        extension: str,
        *,
        name: str = "Sales agent",
        auth_required: bool = True,
        whitelist: list[str] | None = None,
    ) -> str:
        """A click-to-call endpoint (docs: "Create a clicktocall endpoint"); returns its id."""
        c2c_id = uuid.uuid4().hex
        self.c2c[c2c_id] = {
            "id": c2c_id,
            "name": name,
            "extension": extension,
            "auth_required": auth_required,
            "whitelist": whitelist or [],
        }
        return c2c_id

    def add_webhook(
        self,
        hook: str,
        uri: str,
        *,
        name: str | None = None,
        enabled: bool = True,
        disable_reason: str | None = None,
        **extra: Any,
    ) -> str:
        """A hook already in the account (created by hand, or by an earlier run)."""
        hook_id = uuid.uuid4().hex
        self.webhooks[hook_id] = {
            "id": hook_id,
            "name": name or f"hook {hook}",
            "hook": hook,
            "uri": uri,
            "http_verb": "post",
            "retries": 2,
            "enabled": enabled,
            **({"pvt_disabled_message": disable_reason} if disable_reason else {}),
            **extra,
        }
        return hook_id

    def add_user(self, first_name: str, last_name: str, email: str | None = None) -> str:
        """A user (docs: users.md, "Fetch" summary); returns its id, the devices' owner_id."""
        user_id = uuid.uuid4().hex
        self.users[user_id] = {
            "id": user_id,
            "first_name": first_name,
            "last_name": last_name,
            "features": ["caller_id"],
            "priv_level": "user",
            "timezone": "Europe/Paris",
            **({"email": email, "username": email} if email else {}),
        }
        return user_id

    def add_device(self, owner_id: str | None, username: str, name: str = "Desk phone") -> str:
        """A SIP device (docs: devices.md, "Fetch the device summary"); returns its id."""
        device_id = uuid.uuid4().hex
        self.devices[device_id] = {
            "id": device_id,
            "name": name,
            "enabled": True,
            "flags": [],
            "features": [],
            "device_type": "sip_device",
            "mac_address": "001122334455",
            "username": username,
            **({"owner_id": owner_id} if owner_id else {}),
        }
        return device_id

    def fail_next(self, status: int) -> None:
        self._failures.append(status)

    # -- what tests read ---------------------------------------------------------------
    # -- the API ------------------------------------------------------------------------
    def _envelope(self, status: int, body: dict[str, Any]) -> Response:
        base = {
            "auth_token": self.auth_token,
            "request_id": secrets.token_hex(16),
            "node": "fake-node",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": self.version,
        }
        return Response(json.dumps({**base, **body}), status=status, mimetype="application/json")

    def _error(self, status: int, message: str, data: Any) -> Response:
        return self._envelope(
            status, {"status": "error", "error": str(status), "message": message, "data": data}
        )

    def _handle(self, request: Request) -> Response:
        if self._failures:
            status = self._failures.pop(0)
            return self._error(status, "scripted failure", {"message": "scripted failure"})
        hooks = WEBHOOKS_PATH.match(request.path)
        if hooks is not None:
            return self._webhooks_api(request, hooks.group(1))
        listing = DIRECTORY_PATH.match(request.path)
        if listing is not None and request.method == "GET":
            return self._directory(request, *listing.groups())
        match = PATH.match(request.path)
        if match is None:
            return self._error(404, "bad_identifier", {"message": "bad identifier"})
        if request.method not in ("GET", "POST"):
            return self._error(405, "method_not_allowed", {"message": "method not allowed"})
        account_id, c2c_id = match.groups()
        doc = self.c2c.get(c2c_id) if account_id == self.account_id else None
        # cb_clicktocall:is_auth_required: an unknown endpoint requires auth too.
        if doc is None or doc["auth_required"]:
            if request.headers.get("X-Auth-Token") != self.auth_token:
                return self._error(401, "invalid_credentials", {"message": "invalid credentials"})
            if account_id != self.account_id:
                return self._error(403, "forbidden", {"message": "forbidden"})
        if doc is None:
            return self._error(
                404, "bad_identifier", {"message": "bad identifier", "cause": c2c_id}
            )
        envelope = request.get_json(silent=True)
        data = envelope.get("data") if isinstance(envelope, dict) else None
        contact = (data or {}).get("contact") if isinstance(data, dict) else None
        contact = contact or request.args.get("contact")
        if not contact:
            return self._error(
                400,
                "validation error",
                {
                    "contact": {
                        "required": {
                            "message": "The contact extension for this click to call has "
                            "not been set"
                        }
                    }
                },
            )
        route = kazoo_contact(str(contact))
        if doc["whitelist"] and not any(re.search(p, route) for p in doc["whitelist"]):
            return self._error(400, "Contact doesn't match whitelist", route)
        call_id = f"c2c-{c2c_id}-{secrets.token_hex(5)}"
        self.calls.append({"c2c_id": c2c_id, "extension": doc["extension"], "route": route})
        return self._envelope(
            202, {"status": "success", "data": self._originate(doc, route, call_id)}
        )

    def _webhooks_api(self, request: Request, account_id: str) -> Response:
        if request.headers.get("X-Auth-Token") != self.auth_token:
            return self._error(401, "invalid_credentials", {"message": "invalid credentials"})
        if account_id != self.account_id:
            return self._error(403, "forbidden", {"message": "forbidden"})
        if request.method == "GET":
            return self._list_webhooks(request)
        if request.method == "PUT":
            return self._create_webhook(request)
        return self._error(405, "method_not_allowed", {"message": "method not allowed"})

    def _directory(self, request: Request, account_id: str, what: str) -> Response:
        if request.headers.get("X-Auth-Token") != self.auth_token:
            return self._error(401, "invalid_credentials", {"message": "invalid credentials"})
        if account_id != self.account_id:
            return self._error(403, "forbidden", {"message": "forbidden"})
        docs = self.users if what == "users" else self.devices
        ids = sorted(docs)
        # The smaller of what the client asks and the server's own page size (crossbar caps it).
        size = min(int(request.args.get("page_size") or self.page_size), self.page_size)
        start = request.args.get("start_key")
        first = ids.index(base64.urlsafe_b64decode(start).decode()) if start else 0
        body: dict[str, Any] = {
            "status": "success",
            "data": [docs[i] for i in ids[first : first + size]],
        }
        body["page_size"] = len(body["data"])
        if start:
            body["start_key"] = start
        if first + size < len(ids):
            body["next_start_key"] = base64.urlsafe_b64encode(ids[first + size].encode()).decode()
        return self._envelope(200, body)

    def _list_webhooks(self, request: Request) -> Response:
        # The view's key is [account_id, doc id]: summaries in id order.
        ids = sorted(self.webhooks)
        start = request.args.get("start_key")
        first = ids.index(base64.urlsafe_b64decode(start).decode()) if start else 0
        page = ids[first : first + self.page_size]
        rows = []
        for hook_id in page:
            doc = self.webhooks[hook_id]
            row = {k: doc.get(k) for k in ("id", "hook", "name", "uri")}
            row["enabled"] = doc.get("enabled", True)
            if doc.get("pvt_disabled_message"):
                row["disable_reason"] = doc["pvt_disabled_message"]
            rows.append(row)
        body: dict[str, Any] = {"status": "success", "data": rows, "page_size": len(rows)}
        if start:
            body["start_key"] = start
        if first + self.page_size < len(ids):
            key = ids[first + self.page_size].encode()
            body["next_start_key"] = base64.urlsafe_b64encode(key).decode()
        return self._envelope(200, body)

    def _create_webhook(self, request: Request) -> Response:
        envelope = request.get_json(silent=True)
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(data, dict):
            return self._error(400, "invalid request", {"message": "data is missing"})
        errors: dict[str, Any] = {}
        for key in ("name", "uri", "hook"):
            if not data.get(key):
                errors[key] = {"required": {"message": "Field is required but missing"}}
        enums = {
            "hook": AVAILABLE_HOOKS,
            "http_verb": ("get", "post", "put"),
            "format": ("form-data", "json"),
        }
        for key, allowed in enums.items():
            if data.get(key) and data[key] not in allowed:
                errors[key] = {
                    "enum": {
                        "message": "Value not found in enumerated list of values",
                        "target": list(allowed),
                    }
                }
        if errors:
            return self._error(400, "validation error", errors)
        hook_id = uuid.uuid4().hex
        doc = {"http_verb": "post", "retries": 2, "enabled": True, **data, "id": hook_id}
        self.webhooks[hook_id] = doc
        return self._envelope(201, {"status": "success", "data": doc})

    def _originate(self, doc: dict[str, Any], route: str, call_id: str) -> dict[str, Any]:
        """The documented 202 ``data``, placeholders filled."""
        realm, extension = self.realm, doc["extension"]
        return {
            "application_data": {"route": route},
            "application_name": "transfer",
            "continue_on_fail": True,
            "custom_application_vars": {"contact": route},
            "custom_channel_vars": {
                "account_id": self.account_id,
                "authorizing_id": doc["id"],
                "authorizing_type": "clicktocall",
                "auto_answer_loopback": True,
                "from_uri": f"{extension}@{realm}",
                "inherit_codec": False,
                "loopback_request_uri": f"{route}@{realm}",
                "request_uri": f"{route}@{realm}",
                "retain_cid": True,
            },
            "dial_endpoint_method": "single",
            "endpoints": [
                {
                    "invite_format": "loopback",
                    "route": extension,
                    "to_did": extension,
                    "to_realm": realm,
                }
            ],
            "export_custom_channel_vars": [
                "Account-ID",
                "Authorizing-ID",
                "Authorizing-Type",
                "Loopback-Request-URI",
                "From-URI",
                "Request-URI",
            ],
            "ignore_early_media": True,
            "loopback_bowout": "false",
            "outbound_call_id": call_id,
            "outbound_callee_id_name": extension,
            "outbound_callee_id_number": extension,
            "outbound_caller_id_name": doc["name"],
            "outbound_caller_id_number": route,
            "simplify_loopback": "false",
            "start_control_process": "false",
            "timeout": 30,
        }
