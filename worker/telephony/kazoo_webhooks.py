"""KAZOO: create the account's webhooks callhook needs, once (``callhook kazoo webhooks``).

Sources: KAZOO's crossbar webhooks API (2600hz/kazoo ``applications/crossbar/doc/webhooks.md``,
the hook schema ``schemas/webhooks.json``, the listing view ``webhooksdb-webhooks.json``
``crossbar_listing``, pagination in ``doc/basics.md``), as summarised in
docs/platforms/kazoo.md:

- ``GET /v2/accounts/{ACCOUNT_ID}/webhooks`` lists summaries ``{id, hook, name, uri, enabled,
  disable_reason}``, paginated: the envelope's ``next_start_key`` (opaque) is passed back as
  ``start_key`` until it is absent.
- ``PUT /v2/accounts/{ACCOUNT_ID}/webhooks`` with ``{"data": {"name", "uri", "hook",
  "http_verb", "format", "include_subaccounts"}}`` creates one hook; ``X-Auth-Token``
  authenticates both.
- ``format: json`` exists from KAZOO 4.3; before, and by default, hooks post form data. The
  crossbar envelope's ``version`` says which KAZOO answers.

One hook per channel event, not ``hook: all``: ``all`` also sends every ``object``,
``notifications``, ``parking``, ``sms`` and ``mms`` payload of the account, each of which
callhook stores as "ignored"; and an event type KAZOO adds later would be answered 422,
which counts towards KAZOO disabling the hook, and with it the call events.

Idempotent: a hook with the same ``uri`` and ``hook`` is kept, not created again, and an
``all`` hook to the same URI already covers every event; so running it twice, or after a
half-finished run, creates only what is missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from worker.core.redaction import short_text
from worker.telephony.base import (
    DEFAULT_TIMEOUTS,
    Timeouts,
    TransportFailure,
    json_object,
    new_session,
    send,
)

HOOK_EVENTS = ("channel_create", "channel_answer", "channel_bridge", "channel_destroy")
FORMATS = ("auto", "json", "form")
WEBHOOK_PATH = "/webhooks/kazoo"
SECRET_PLACEHOLDER = "<KAZOO_WEBHOOK_SECRET>"


class KazooSetupError(Exception):
    """Why the hooks could not be listed or created, for the admin; never holds a secret."""


@dataclass(frozen=True)
class ExistingHook:
    """One row of KAZOO's webhook listing."""

    id: str
    hook: str
    uri: str
    name: str = ""
    enabled: bool = True
    disable_reason: str | None = None

    @classmethod
    def from_summary(cls, row: dict[str, Any]) -> ExistingHook:
        return cls(
            id=str(row.get("id") or ""),
            hook=str(row.get("hook") or ""),
            uri=str(row.get("uri") or ""),
            name=str(row.get("name") or ""),
            enabled=row.get("enabled") is not False,
            disable_reason=row.get("disable_reason") or None,
        )


@dataclass
class PlannedHook:
    """What happens to one event: ``create``, ``keep`` (it exists) or ``covered`` (by ``all``)."""

    event: str
    action: str
    data: dict[str, Any]
    existing: ExistingHook | None = None
    created_id: str | None = None


@dataclass
class WebhookPlan:
    uri: str
    format: str  # "json" or "form-data"
    server_version: str | None
    hooks: list[PlannedHook]
    # Other hooks to callhook's KAZOO URL with another URI (an old secret, another host).
    strays: list[ExistingHook] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def to_create(self) -> list[PlannedHook]:
        return [h for h in self.hooks if h.action == "create" and h.created_id is None]

    def describe(self, secret: str) -> list[str]:
        """The plan as lines for a terminal, with the secret masked."""
        version = f"KAZOO {self.server_version}" if self.server_version else "KAZOO"
        lines = [
            f"{version}: hooks to {mask(self.uri, secret)} (http_verb post, format {self.format})"
        ]
        for hook in self.hooks:
            existing = hook.existing
            if hook.action == "create":
                state = f"created (id {hook.created_id})" if hook.created_id else "to create"
                lines.append(f"  create   {hook.event:<16} {state}: {hook.data['name']!r}")
            elif hook.action == "covered":
                assert existing is not None
                lines.append(
                    f"  covered  {hook.event:<16} by hook {existing.id} (hook: all, same URI)"
                )
            else:
                assert existing is not None
                lines.append(f"  keep     {hook.event:<16} hook {existing.id} already exists")
            if existing is not None and not existing.enabled:
                lines.append(
                    f"           DISABLED by KAZOO ({existing.disable_reason or 'no reason given'}"
                    "): re-enable it with PATCH /v2/accounts/{ACCOUNT_ID}/webhooks "
                    '{"data": {"re-enable": true}}'
                )
        for stray in self.strays:
            lines.append(
                f"  note: hook {stray.id} ({stray.hook}) also posts to callhook, at "
                f"{mask(stray.uri, secret)}: an old secret? delete it once the hooks above work"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return lines


# -- building the plan -----------------------------------------------------------------------
def webhook_uri(public_base_url: str, secret: str) -> str:
    """``<PUBLIC_BASE_URL>/webhooks/kazoo?token=<secret>``: KAZOO hooks carry no header."""
    base = public_base_url.strip().rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise KazooSetupError(
            "PUBLIC_BASE_URL must be the address KAZOO can reach, e.g. https://callhook.example.com"
        )
    if not secret:
        raise KazooSetupError("KAZOO_WEBHOOK_SECRET is not set: the hooks' URI needs it")
    return f"{base}{WEBHOOK_PATH}?token={quote(secret, safe='')}"


def mask(text: str, secret: str) -> str:
    """`text` with the webhook secret (raw or URL-encoded) replaced by a placeholder."""
    for form in {secret, quote(secret, safe="")}:
        if form:
            text = text.replace(form, SECRET_PLACEHOLDER)
    return text


def server_supports_json(version: str | None) -> bool:
    match = re.match(r"\s*(\d+)\.(\d+)", version or "")
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (4, 3)


def choose_format(requested: str, version: str | None) -> str:
    """``json`` or ``form-data``; ``auto`` picks JSON when the server is 4.3 or later."""
    if requested not in FORMATS:
        raise KazooSetupError(f"format must be one of {', '.join(FORMATS)}, not {requested!r}")
    if requested == "form":
        return "form-data"
    if requested == "json":
        return "json"
    return "json" if server_supports_json(version) else "form-data"


def hook_data(
    event: str, uri: str, fmt: str, *, include_subaccounts: bool = False
) -> dict[str, Any]:
    """The ``data`` of the PUT that creates the hook for `event`."""
    data: dict[str, Any] = {
        "name": f"callhook {event}",
        "uri": uri,
        "hook": event,
        "http_verb": "post",
    }
    # form-data is the default on every version, and `format` is unknown before 4.3.
    if fmt == "json":
        data["format"] = "json"
    if include_subaccounts:
        data["include_subaccounts"] = True
    return data


def plan_webhooks(
    existing: list[ExistingHook],
    *,
    uri: str,
    fmt: str,
    server_version: str | None = None,
    include_subaccounts: bool = False,
    events: tuple[str, ...] = HOOK_EVENTS,
) -> WebhookPlan:
    """What to create so that each of `events` reaches `uri` exactly once."""
    same_uri = [h for h in existing if h.uri == uri]
    covering = next((h for h in same_uri if h.hook == "all"), None)
    planned = []
    for event in events:
        data = hook_data(event, uri, fmt, include_subaccounts=include_subaccounts)
        match = next((h for h in same_uri if h.hook == event), None)
        if match is not None:
            planned.append(PlannedHook(event, "keep", data, existing=match))
        elif covering is not None:
            planned.append(PlannedHook(event, "covered", data, existing=covering))
        else:
            planned.append(PlannedHook(event, "create", data))
    ours = urlsplit(uri)
    strays = [
        h
        for h in existing
        if h.uri != uri
        and urlsplit(h.uri).netloc == ours.netloc
        and urlsplit(h.uri).path.rstrip("/") == ours.path
    ]
    notes = []
    if fmt == "json" and server_version and not server_supports_json(server_version):
        notes.append(
            f"format json was asked for, but KAZOO {server_version} sends form data only "
            "(json needs 4.3): callhook reads both"
        )
    if server_version is None and fmt == "form-data":
        notes.append("KAZOO's version is unknown: form-data, which every version sends")
    return WebhookPlan(uri, fmt, server_version, planned, strays, notes)


def curl_commands(
    *,
    public_base_url: str,
    fmt: str,
    include_subaccounts: bool = False,
    events: tuple[str, ...] = HOOK_EVENTS,
) -> str:
    """Shell commands that create the hooks by hand; secrets stay in environment variables.

    ``$KAZOO_API_URL``, ``$KAZOO_ACCOUNT_ID``, ``$KAZOO_AUTH_TOKEN`` and
    ``$KAZOO_WEBHOOK_SECRET`` are read by the shell, so nothing secret is printed.
    """
    base = (public_base_url.strip().rstrip("/") or "https://<callhook host>") + WEBHOOK_PATH
    lines = []
    for event in events:
        data = hook_data(event, "@URI@", fmt, include_subaccounts=include_subaccounts)
        body = json.dumps(data)
        # The body is single-quoted for the shell; the secret is spliced in from the env.
        body = body.replace("@URI@", f"{base}?token='\"$KAZOO_WEBHOOK_SECRET\"'")
        lines.append(
            'curl -sS -X PUT "$KAZOO_API_URL/v2/accounts/$KAZOO_ACCOUNT_ID/webhooks" \\\n'
            '  -H "X-Auth-Token: $KAZOO_AUTH_TOKEN" -H "Content-Type: application/json" \\\n'
            f"  -d '{{\"data\": {body}}}'"
        )
    return "\n".join(lines)


# -- the API --------------------------------------------------------------------------------
class KazooWebhooksApi:
    """Crossbar's webhooks collection for one account (``X-Auth-Token``; no retries)."""

    def __init__(
        self,
        *,
        base_url: str,
        account_id: str,
        auth_token: str,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        session: requests.Session | None = None,
    ):
        if not base_url or not account_id or not auth_token:
            raise KazooSetupError(
                "set KAZOO_API_URL, KAZOO_ACCOUNT_ID and KAZOO_AUTH_TOKEN to list and create "
                "hooks (or run without --apply to see how to create them by hand)"
            )
        self.base_url = base_url.rstrip("/")
        self.account_id = account_id
        self.auth_token = auth_token
        self.timeouts = timeouts
        self.session = session if session is not None else new_session()
        self.url = f"{self.base_url}/v2/accounts/{quote(account_id, safe='')}/webhooks"

    def close(self) -> None:
        self.session.close()

    def list_hooks(self) -> tuple[list[ExistingHook], str | None]:
        """Every hook of the account (all pages), and the server's version."""
        hooks: list[ExistingHook] = []
        version: str | None = None
        start_key: str | None = None
        for _ in range(1000):  # a guard against a server that never ends its pages
            params = {"start_key": start_key} if start_key else None
            response = self._request("GET", params=params, action="list the account's hooks")
            envelope = json_object(response)
            version = version or _text(envelope.get("version"))
            rows = envelope.get("data")
            if not isinstance(rows, list):
                raise KazooSetupError("KAZOO's webhook listing has no data list")
            hooks.extend(ExistingHook.from_summary(r) for r in rows if isinstance(r, dict))
            start_key = _text(envelope.get("next_start_key"))
            if not start_key:
                return hooks, version
        raise KazooSetupError("KAZOO's webhook listing did not end after 1000 pages")

    def create_hook(self, data: dict[str, Any]) -> str:
        """PUT one hook; its id."""
        response = self._request(
            "PUT", json={"data": data}, action=f"create the {data['hook']} hook", creates=True
        )
        created = json_object(response).get("data")
        hook_id = created.get("id") if isinstance(created, dict) else None
        return str(hook_id or "?")

    def _request(
        self, method: str, *, action: str, creates: bool = False, **kwargs: Any
    ) -> requests.Response:
        try:
            response = send(
                self.session,
                method,
                self.url,
                timeouts=self.timeouts,
                headers={"X-Auth-Token": self.auth_token, "Accept": "application/json"},
                **kwargs,
            )
        except TransportFailure as exc:
            if creates and exc.kind == TransportFailure.OUTCOME_UNKNOWN:
                raise KazooSetupError(
                    f"KAZOO did not answer when asked to {action}: it may exist now. Run the "
                    "command again: it creates only the hooks still missing."
                ) from None
            raise KazooSetupError(
                f"could not reach KAZOO at {self.base_url} to {action} ({exc.error})"
            ) from None
        if response.status_code in (200, 201):
            return response
        raise self._error(response, action)

    def _error(self, response: requests.Response, action: str) -> KazooSetupError:
        status = response.status_code
        envelope = json_object(response)
        secrets = [self.auth_token]
        message = short_text(envelope.get("message"), secrets)
        if status == 401:
            return KazooSetupError(
                f"KAZOO refused KAZOO_AUTH_TOKEN (HTTP 401) when asked to {action}: it may "
                "have expired; get a new one"
            )
        if status == 403:
            return KazooSetupError(
                f"KAZOO does not let this token {action} in account {self.account_id} "
                "(HTTP 403): use a token of that account or of its reseller"
            )
        if status == 404:
            return KazooSetupError(
                f"KAZOO answered 404 when asked to {action}: check KAZOO_API_URL (the crossbar "
                f"root, without /v2) and KAZOO_ACCOUNT_ID"
            )
        details = _validation(envelope.get("data"), secrets)
        return KazooSetupError(
            f"KAZOO refused to {action} (HTTP {status}"
            + (f": {message}" if message else "")
            + (f"; {details}" if details else "")
            + ")"
        )


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def _validation(data: Any, secrets: list[str]) -> str:
    """Crossbar's validation errors, ``{"field": {"rule": {"message": ...}}}``, as text."""
    if not isinstance(data, dict):
        return ""
    parts = []
    for name, rules in data.items():
        if isinstance(rules, dict):
            for rule in rules.values():
                text = rule.get("message") if isinstance(rule, dict) else rule
                parts.append(f"{name}: {text}")
    return short_text("; ".join(parts), secrets)


def set_up_webhooks(
    api: KazooWebhooksApi,
    *,
    public_base_url: str,
    secret: str,
    fmt: str = "auto",
    include_subaccounts: bool = False,
    apply: bool = False,
) -> WebhookPlan:
    """List the hooks, plan the missing ones and, with `apply`, create them."""
    uri = webhook_uri(public_base_url, secret)
    existing, version = api.list_hooks()
    plan = plan_webhooks(
        existing,
        uri=uri,
        fmt=choose_format(fmt, version),
        server_version=version,
        include_subaccounts=include_subaccounts,
    )
    if apply:
        for hook in plan.to_create:
            hook.created_id = api.create_hook(hook.data)
    return plan
