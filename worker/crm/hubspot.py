"""HubSpot: find the caller's contact, log the call, update it in place.

Requests are built once, as plain JSON bodies, and handed to a transport: the
real one sends them with ``hubspot-api-client``; the dry-run one stores them.
That is how the dry run shows *exactly* what would have been sent.

Retries live in the Celery task, never here: the client library is built with
``Retry(0)`` so a failure surfaces at once as a ``TransientCrmError``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests
from hubspot import HubSpot
from markupsafe import Markup, escape
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from worker.core.agents import AgentDirectory
from worker.core.events import Direction
from worker.core.metrics import HUBSPOT_REQUESTS
from worker.core.numbers import contact_e164s, display, national_number
from worker.core.retry_after import retry_after_seconds
from worker.crm import request_journal
from worker.crm.base import (
    CallSnapshot,
    Contact,
    CrmError,
    LogResult,
    PermanentCrmError,
    TransientCrmError,
)
from worker.crm.contacts import ensure_contact
from worker.crm.hubspot_config import HTML_TEMPLATES, TEMPLATES, HubSpotMapping
from worker.crm.rate_limit import RateLimiter

log = logging.getLogger("callhook.crm")

ASSOC_CALL_TO_CONTACT = 194
ASSOC_CALL_TO_COMPANY = 182
ASSOC_CALL_TO_DEAL = 206
ASSOC_TASK_TO_CONTACT = 204
OWNER_CACHE_S = 600.0


class Transport(Protocol):
    def search_contacts(self, body: dict[str, Any]) -> list[dict[str, Any]]: ...
    def search_calls(self, body: dict[str, Any]) -> list[dict[str, Any]]: ...
    def create_call(self, body: dict[str, Any]) -> str: ...
    def update_call(self, crm_id: str, body: dict[str, Any]) -> None: ...
    def owner_id_for_email(self, email: str) -> str | None: ...
    def owner_by_id(self, owner_id: str) -> dict[str, Any] | None: ...
    def search_deals(self, body: dict[str, Any]) -> list[dict[str, Any]]: ...
    def associate_call(self, call_id: str, to_type: str, to_id: str, type_id: int) -> None: ...
    def create_task(self, body: dict[str, Any]) -> str: ...
    def update_task(self, task_id: str, body: dict[str, Any]) -> None: ...
    def delete_task(self, task_id: str) -> None: ...
    def create_contact(self, body: dict[str, Any]) -> str: ...
    def account_details(self) -> dict[str, Any]: ...


class ContactCache(Protocol):
    """Where lookups are remembered across processes (Redis in the worker and web)."""

    def get(self, e164: str) -> tuple[bool, list[Contact]]: ...
    def put(self, e164: str, contacts: list[Contact]) -> None: ...
    def forget(self, e164: str) -> None: ...


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
    if status == 429:
        if str(body.get("policyName", "")).upper() == "DAILY":
            return PermanentCrmError(
                text + " (daily limit: retried tomorrow by replay)", status=429
            )
        return TransientCrmError(text, status=429, retry_after=_retry_after(exc.headers))  # type: ignore[attr-defined]
    if status >= 500 or status == 408:
        return TransientCrmError(text, status=status, retry_after=_retry_after(exc.headers))  # type: ignore[attr-defined]
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
        return response.json()


class HubSpotCrm:
    """The HubSpot adapter: lookups and call logging, through a transport."""

    def __init__(
        self,
        transport: Transport,
        mapping: HubSpotMapping,
        agents: AgentDirectory,
        default_region: str,
        cache: ContactCache | None = None,
        locks: Any = None,
        platform_names: dict[str, str] | None = None,
    ):
        self.transport = transport
        self.platform_names = platform_names or {}
        self.mapping = mapping
        self.agents = agents
        self.region = default_region
        self.cache = cache
        # Holds the per-number lock when a placeholder contact is created (None: no lock).
        self.locks = locks
        self.company_numbers = set(mapping.contact_lookup.company_numbers)
        self._owners: dict[str, tuple[float, str | None]] = {}
        self._owner_names: dict[str, tuple[float, dict[str, Any] | None]] = {}

    # -- lookups -------------------------------------------------------------
    def contact_search_body(self, e164: str) -> dict[str, Any]:
        lookup = self.mapping.contact_lookup
        national = national_number(e164)
        groups = [
            {"filters": [{"propertyName": p, "operator": "EQ", "value": national}]}
            for p in lookup.national_properties
        ] + [
            {"filters": [{"propertyName": p, "operator": "EQ", "value": e164}]}
            for p in lookup.e164_properties
        ]
        return {
            "filterGroups": groups[:5],
            "properties": lookup.properties,
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
            "limit": 20,
        }

    def find_contact_by_number(self, e164: str, *, recheck_miss: bool = False) -> Contact | None:
        """The most recently modified contact whose number is this one (see below)."""
        found = self.find_contacts_by_number(e164, recheck_miss=recheck_miss)
        return found[0] if found else None

    def find_contacts_by_number(self, e164: str, *, recheck_miss: bool = False) -> list[Contact]:
        """The contacts whose number is this one, most recently modified first, country checked.

        The company's own numbers match nobody. Lookups go through the shared cache;
        `recheck_miss` asks HubSpot again when the cache only remembers that nobody was
        found (before creating a contact). The calculated properties match on the
        national number alone, so +33 6… and +44 6… could both match: a contact whose
        stored number is valid in another country is rejected; those whose number cannot
        be parsed, or is only possible, are kept when no exact match exists. A caller's
        number that is possible but not valid (newer than the metadata) matches on its
        digits.
        """
        if e164 in self.company_numbers:
            return []
        if self.cache is not None:
            known, contacts = self.cache.get(e164)
            if known and (contacts or not recheck_miss):
                return contacts
        contacts = self._search_contacts(e164)
        if self.cache is not None:
            self.cache.put(e164, contacts)
        return contacts

    def _search_contacts(self, e164: str) -> list[Contact]:
        results = self.transport.search_contacts(self.contact_search_body(e164))
        exact, unsure = [], []
        for row in results:  # HubSpot sorted them, most recently modified first
            contact = Contact(id=str(row["id"]), properties=row.get("properties") or {})
            valid, possible = contact_e164s(
                (contact.properties.get(p) for p in ("phone", "mobilephone")), self.region
            )
            if e164 in valid or e164 in possible:
                exact.append(contact)
            elif not valid:  # nothing proves another country: kept if nothing better
                unsure.append(contact)
        return exact or unsure

    def owner_for_agent(self, platform: str, agent_ident: str | None) -> str | None:
        agent = self.agents.find(platform, agent_ident)
        if agent is None:
            return None
        return self.owner_for_email(agent.email, agent.hubspot_owner_id)

    def owner_for_email(self, email: str, known_id: str | None = None) -> str | None:
        """The HubSpot owner id of a user, by email (cached; a miss is cached too)."""
        if known_id:
            return known_id
        cached = self._owners.get(email)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        owner_id = self.transport.owner_id_for_email(email)
        self._owners[email] = (time.monotonic() + OWNER_CACHE_S, owner_id)
        return owner_id

    def owner(self, owner_id: str | None) -> dict[str, Any] | None:
        """An owner's id, email and names (cached per process: owners rarely change)."""
        if not owner_id:
            return None
        cached = self._owner_names.get(owner_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        owner = self.transport.owner_by_id(owner_id)
        self._owner_names[owner_id] = (time.monotonic() + OWNER_CACHE_S, owner)
        return owner

    def find_logged_call(self, external_id: str) -> str | None:
        """The record an earlier create made though its answer was lost, if there is one.

        Only asked when a create went unanswered, so the normal path costs no search.
        HubSpot's search index lags writes by seconds; a retry comes later than that.
        """
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "hs_call_external_id",
                            "operator": "EQ",
                            "value": external_id,
                        }
                    ]
                }
            ],
            "properties": ["hs_call_external_id"],
            "sorts": [{"propertyName": "hs_createdate", "direction": "ASCENDING"}],
            "limit": 1,
        }
        found = self.transport.search_calls(body)
        return str(found[0]["id"]) if found else None

    # -- the call record -----------------------------------------------------
    def call_properties(
        self, call: CallSnapshot, contact: Contact | None, owner_id: str | None
    ) -> dict[str, Any]:
        spec = self.mapping.call
        inbound = call.direction == Direction.INBOUND
        external = call.external_number or call.external_number_raw or ""
        ours = call.company_number or call.agent or ""
        duration = call.talk_s if call.talk_s is not None else call.duration_s
        if duration is None and call.answered_at and call.ended_at:
            # Platforms that send only times (Kwebbl): the talk lasted from answer to end.
            duration = max(0, round((call.ended_at - call.answered_at).total_seconds()))
        when = call.started_at or call.answered_at
        if when is None and call.ended_at is not None:
            when = call.ended_at - timedelta(seconds=call.duration_s or 0)
        context = {
            "call": call,
            "direction": call.direction or "unknown",
            "number": call.external_number,
            "number_display": display(call.external_number, external),
            "contact_name": contact.name if contact else None,
            "agent": call.agent,
            "outcome": call.outcome,
            "duration_s": duration,
            "variables": readable_variables(call.variables or {}),
            "platform": self.platform_names.get(call.platform, call.platform),
            "platform_id": call.platform,
        }
        body = HTML_TEMPLATES.from_string(spec.body).render(context).strip()
        note = self.agent_note_html(call)
        if note:
            body = f"{body}\n{note}" if body else note
        props: dict[str, Any] = {
            "hs_timestamp": _ms(when) if when else None,
            "hs_call_title": TEMPLATES.from_string(spec.title).render(context).strip(),
            "hs_call_body": body,
            "hs_call_direction": "INBOUND" if inbound else "OUTBOUND",
            "hs_call_duration": str(duration * 1000) if duration is not None else None,
            "hs_call_from_number": external if inbound else ours,
            "hs_call_to_number": ours if inbound else external,
            "hs_call_status": self._status(call),
            "hs_call_disposition": self._disposition(call),
            "hs_call_recording_url": call.recording_url
            if (call.recording_url or "").startswith("https://")
            else None,
            "hubspot_owner_id": owner_id,
            "hs_call_external_id": call.external_id,
        }
        for name, template in spec.properties.items():
            props[name] = TEMPLATES.from_string(template).render(context).strip()
        return {k: v for k, v in props.items() if v not in (None, "")}

    def _disposition(self, call: CallSnapshot) -> str | None:
        """The call's HubSpot outcome: the agent's choice after the call (the agent page's
        wrap-up), else the one `call.disposition` gives the platform's outcome."""
        if not call.ended:
            return None
        if call.agent_outcome:
            return call.agent_outcome
        return self.mapping.call.disposition.get(call.outcome) if call.outcome else None  # type: ignore[call-overload]

    def agent_note_html(self, call: CallSnapshot) -> str:
        """The agent's note as appended to hs_call_body, which HubSpot shows as HTML: the
        text escaped (a note is the agent's words, never markup), its lines kept."""
        if not call.agent_note:
            return ""
        agent = self.agents.by_email(call.agent_wrapped_by) if call.agent_wrapped_by else None
        who = (agent.name or str(agent.email)) if agent else (call.agent_wrapped_by or "agent")
        text = escape(call.agent_note.strip()).replace("\n", Markup("<br>\n"))
        return str(Markup("<p><strong>Note from {}:</strong><br>\n{}</p>").format(who, text))

    def _status(self, call: CallSnapshot) -> str | None:
        """The outcome's status once ended; before (logging at the start), live status."""
        if not call.ended:
            return "RINGING" if call.stage == "ringing" else "IN_PROGRESS"
        return self.mapping.call.status.get(call.outcome) if call.outcome else None  # type: ignore[call-overload]

    def log_call(self, call: CallSnapshot) -> LogResult:
        try:
            return self._log_call(call, fresh=False)
        except PermanentCrmError as exc:
            # A contact remembered by the cache was deleted or merged in HubSpot since:
            # forget it and try once more with what HubSpot says now.
            if self.cache is None or not call.external_number or not _stale_contact(exc):
                raise
            self.cache.forget(call.external_number)
            return self._log_call(call, fresh=True)

    def _log_call(self, call: CallSnapshot, *, fresh: bool) -> LogResult:
        contacts, note = self._contacts_for(call, fresh=fresh)
        primary = contacts[0] if contacts else None
        agent_owner = self.owner_for_agent(call.platform, call.agent)
        agent = self.agents.find(call.platform, call.agent)
        if agent is not None and agent_owner is None:
            # Visible, not fatal: the call is still logged, on the next owner in line.
            log.warning("crm.owner_missing agent=%s", agent.email)
            missing = f"{agent.email} is not a HubSpot user (no owner found by email)"
            note = f"{note}; {missing}" if note else missing
        owner_id = (
            agent_owner
            or (primary.properties.get("hubspot_owner_id") if primary else None)
            or self.mapping.owners.default_owner_id
        )
        properties = self.call_properties(call, primary, owner_id)
        if call.crm_id or call.create_in_doubt:
            # An update states the owner even when there is none now: an owner set by an
            # earlier, less complete sync (a ring-group tie) must not stay.
            properties.setdefault("hubspot_owner_id", "")
        crm_id, action = call.crm_id, "update"
        if crm_id is None and call.create_in_doubt:
            crm_id, action = self.find_logged_call(call.external_id), "recover"
        if crm_id:
            self.transport.update_call(crm_id, {"properties": properties})
            if primary is not None and primary.id != call.crm_contact_id:
                # The contact became known after the record was made (the number came in a
                # later event, or a placeholder was created): attach it now.
                for contact in contacts:
                    self.transport.associate_call(
                        crm_id, "contacts", contact.id, ASSOC_CALL_TO_CONTACT
                    )
        else:
            body = {"properties": properties, "associations": self._associations(contacts)}
            crm_id, action = self.transport.create_call(body), "create"
        contact_id = primary.id if primary is not None else None
        result = LogResult(crm_id, action, contact_id, owner_id, note, call.crm_task_id)
        result.contact_name = (primary.name or None) if primary else None
        try:
            result.task_id = self._sync_task(call, primary)
        except CrmError as exc:
            # The call record exists: keep its id whatever happens to the task; the
            # sync is retried for the task alone.
            result.incomplete = exc
        return result

    def _sync_task(self, call: CallSnapshot, contact: Contact | None) -> str | None:
        """The missed-call task after this sync: created once, kept up to date while the
        call still counts as missed (its owner may be known only now), withdrawn when a
        late event shows the call was answered after all."""
        task_id, wanted = call.crm_task_id, self._wants_task(call)
        if task_id is None:
            return self._create_task(call, contact) if wanted else None
        if not wanted:
            self.transport.delete_task(task_id)
            return None
        self.transport.update_task(task_id, {"properties": self._task_properties(call, contact)})
        return task_id

    def _contacts_for(self, call: CallSnapshot, *, fresh: bool) -> tuple[list[Contact], str | None]:
        """The contacts to log the call on, and a note when that was a choice."""
        policy = self.mapping.contact_lookup
        number = call.external_number
        if not number or call.direction == Direction.INTERNAL:
            return [], None
        if number in self.company_numbers:
            return [], f"{number} is one of the company's own numbers: no contact"
        found = self.find_contacts_by_number(number, recheck_miss=fresh)
        if len(found) > 1:
            if policy.several_matches == "all":
                return found, f"{len(found)} contacts share {number}: logged on all of them"
            return found[:1], (
                f"{len(found)} contacts share {number}: chose the most recently modified "
                f"({found[0].name or found[0].id})"
            )
        if found or policy.unknown_caller != "create_contact" or self.locks is None:
            return found, None
        owner = (
            self.owner_for_agent(call.platform, call.agent) or self.mapping.owners.default_owner_id
        )
        contact, created = ensure_contact(self, self.locks, number, owner)
        return [contact], (
            "created a placeholder contact for an unknown caller" if created else None
        )

    def _associations(self, contacts: list[Contact]) -> list[dict[str, Any]]:
        """The call's associations on create: its contacts, the primary contact's company and,
        when asked, its open deal."""

        def link(object_id: str, type_id: int) -> dict[str, Any]:
            spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
            return {"to": {"id": object_id}, "types": [spec]}

        links = [link(c.id, ASSOC_CALL_TO_CONTACT) for c in contacts]
        if not contacts:
            return links
        primary = contacts[0]
        company = primary.properties.get("associatedcompanyid")
        if self.mapping.associations.company and company:
            links.append(link(str(company), ASSOC_CALL_TO_COMPANY))
        if self.mapping.associations.open_deal:
            deal = self.open_deal(primary.id)
            if deal:
                links.append(link(str(deal["id"]), ASSOC_CALL_TO_DEAL))
        return links

    def open_deal(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's most recently modified open deal ({id, properties}), if any: the
        call is associated with it, and the caller's card shows it (one search each)."""
        found = self.transport.search_deals(self._open_deal_body(contact_id))
        return found[0] if found else None

    def _open_deal_body(self, contact_id: str) -> dict[str, Any]:
        filters = [
            {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id},
            {"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"},
        ]
        return {
            "filterGroups": [{"filters": filters}],
            "properties": ["dealname", "amount"],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}],
            "limit": 1,
        }

    def _wants_task(self, call: CallSnapshot) -> bool:
        task = self.mapping.missed_call_task
        return (
            task.enabled
            and call.ended
            and call.direction == Direction.INBOUND
            and call.outcome in task.outcomes
        )

    def _task_properties(self, call: CallSnapshot, contact: Contact | None) -> dict[str, str]:
        """The task's subject, body, owner and due time; the owner is the agent who should
        have answered, else the contact's owner, else the default owner."""
        spec = self.mapping.missed_call_task
        owner = (
            self.owner_for_agent(call.platform, call.agent)
            or (contact.properties.get("hubspot_owner_id") if contact else None)
            or self.mapping.owners.default_owner_id
        )
        context = {
            "number_display": (
                display(call.external_number)
                if call.external_number
                else call.external_number_raw or ""
            ),
            "contact_name": contact.name if contact else None,
            "agent": call.agent,
            "platform": self.platform_names.get(call.platform, call.platform),
            "platform_id": call.platform,
            "call": call,
        }
        due = (call.ended_at or datetime.now(UTC)) + timedelta(minutes=spec.due_in_minutes)
        return {
            "hs_timestamp": _ms(due),
            "hs_task_subject": TEMPLATES.from_string(spec.subject).render(context).strip(),
            "hs_task_body": HTML_TEMPLATES.from_string(spec.body).render(context).strip(),
            "hs_task_priority": spec.priority,
            "hubspot_owner_id": owner or "",
        }

    def _create_task(self, call: CallSnapshot, contact: Contact | None) -> str:
        """The follow-up of a missed call, due soon, on the caller's contact."""
        properties = {
            **self._task_properties(call, contact),
            "hs_task_type": "CALL",
            "hs_task_status": "NOT_STARTED",
        }
        body: dict[str, Any] = {
            "properties": {k: v for k, v in properties.items() if v},
            "associations": [],
        }
        if contact is not None:
            body["associations"].append(
                {
                    "to": {"id": contact.id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": ASSOC_TASK_TO_CONTACT,
                        }
                    ],
                }
            )
        return self.transport.create_task(body)


def _stale_contact(exc: PermanentCrmError) -> bool:
    """HubSpot refused an association because the contact no longer exists."""
    text = str(exc).lower()
    return exc.status in (400, 404) and "association" in text


def readable_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables as a person reads them in a call body: nested values as compact JSON
    (KAZOO's `custom_channel_vars` would otherwise print as a Python dict)."""
    return {
        name: value
        if isinstance(value, str | int | float | bool)
        else json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
        for name, value in variables.items()
    }


def _ms(value: Any) -> str:
    return str(int(value.timestamp() * 1000))
