"""HubSpot: find the caller's contact, log the call, update it in place, one call or many.

Requests are built once, as plain JSON bodies, and handed to a transport: the
real one sends them with ``hubspot-api-client`` (`hubspot_transport`); the dry-run one
stores them. That is how the dry run shows *exactly* what would have been sent.

The adapter is split by responsibility: `hubspot_transport` (HTTP, errors, batch
answers), `hubspot_contacts` (which contacts a number belongs to), `hubspot_records`
(the bodies), `hubspot_batch` (many calls in a few requests); this module holds what
ties them: owners, the single-call path and the choice between the two paths.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import redis

from worker.core.agents import AgentDirectory
from worker.core.redis_conn import connect
from worker.core.settings import get_settings
from worker.crm import hubspot_links
from worker.crm.base import (
    CallSnapshot,
    Contact,
    CrmError,
    LogResult,
    PermanentCrmError,
)
from worker.crm.hubspot_batch import log_batch
from worker.crm.hubspot_config import HubSpotMapping
from worker.crm.hubspot_contacts import ContactCache, ContactMatching
from worker.crm.hubspot_records import (
    ASSOC_CALL_TO_CONTACT,
    CallRecords,
    _stale_contact,
    readable_variables,
)
from worker.crm.hubspot_transport import (
    BatchAnswer,
    ClientTransport,
    Transport,
    _retry_after,
    translate_error,
)

__all__ = [
    "BatchAnswer",
    "ClientTransport",
    "ContactCache",
    "HubSpotCrm",
    "Transport",
    "_retry_after",
    "readable_variables",
    "translate_error",
]

log = logging.getLogger("callhook.crm")

OWNER_CACHE_S = 600.0
OWNER_KEY = "callhook:owner:"  # + "email:<email>" or "id:<id>", JSON, shared by processes


class HubSpotCrm(ContactMatching, CallRecords):
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
        # Holds the per-number lock when a placeholder contact is created, and the owners
        # every process shares (None: no lock, owners cached in this process only).
        self.locks = locks
        self.company_numbers = set(mapping.contact_lookup.company_numbers)
        self._owners: dict[str, tuple[float, Any]] = {}

    # -- owners: cached in Redis, shared by every process ----------------------------
    def owner_for_agent(self, platform: str, agent_ident: str | None) -> str | None:
        agent = self.agents.find(platform, agent_ident)
        if agent is None:
            return None
        return self.owner_for_email(agent.email, agent.hubspot_owner_id)

    def owner_for_email(self, email: str, known_id: str | None = None) -> str | None:
        """The HubSpot owner id of a user, by email (cached; a miss is cached too)."""
        if known_id:
            return known_id
        found = self._cached_owner(
            f"email:{email}", lambda: self.transport.owner_id_for_email(email)
        )
        return found if isinstance(found, str) else None

    def owner(self, owner_id: str | None) -> dict[str, Any] | None:
        """An owner's id, email and names (cached: owners rarely change)."""
        if not owner_id:
            return None
        found = self._cached_owner(f"id:{owner_id}", lambda: self.transport.owner_by_id(owner_id))
        return found if isinstance(found, dict) else None

    def _cached_owner(self, key: str, ask: Any) -> Any:
        """This process's memory, then Redis (every process's), then HubSpot."""
        held = self._owners.get(key)
        if held and held[0] > time.monotonic():
            return held[1]
        shared = self.locks if isinstance(self.locks, redis.Redis) else None
        if shared is not None:
            try:
                raw = shared.get(OWNER_KEY + key)
            except redis.RedisError:
                raw = None
            if raw is not None:
                value = json.loads(raw)
                self._owners[key] = (time.monotonic() + OWNER_CACHE_S, value)
                return value
        value = ask()
        self._owners[key] = (time.monotonic() + OWNER_CACHE_S, value)
        if shared is not None:
            with contextlib.suppress(redis.RedisError):
                shared.set(OWNER_KEY + key, json.dumps(value), ex=int(OWNER_CACHE_S))
        return value

    def account_details(self) -> dict[str, Any]:
        """HubSpot's account details (portal id, UI host; `record_url` caches them)."""
        return self.transport.account_details()

    # -- what cards and pages ask (`CrmLookups`) -------------------------------------
    def outcome_choices(self) -> dict[str, str]:
        return self.mapping.call.outcome_choices()

    def wants_open_deal(self) -> bool:
        return bool(self.mapping.associations.open_deal)

    def record_url(self, kind: str, record_id: str | None) -> str | None:
        """The record's page in HubSpot (`hubspot_links`): the portal from
        HUBSPOT_PORTAL_ID or the account details, shared a day through Redis."""
        if not record_id:
            return None
        host, portal_id = hubspot_links.portal(
            self.account_details, connect(), get_settings().hubspot_portal_id
        )
        return hubspot_links.record_link(host, portal_id, kind, record_id)

    # -- the create whose answer was lost ------------------------------------------------
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

    def find_logged_calls(self, external_ids: list[str]) -> dict[str, str]:
        """`find_logged_call` for many: one search, `IN` over the ids (the first record
        made for each, should a lost create have been made twice)."""
        found: dict[str, str] = {}
        for start in range(0, len(external_ids), 100):
            body: dict[str, Any] = {
                "filterGroups": [
                    {
                        "filters": [
                            {
                                "propertyName": "hs_call_external_id",
                                "operator": "IN",
                                "values": external_ids[start : start + 100],
                            }
                        ]
                    }
                ],
                "properties": ["hs_call_external_id"],
                "sorts": [{"propertyName": "hs_createdate", "direction": "ASCENDING"}],
                "limit": 200,
            }
            while True:
                rows, after = self.transport.search_page("calls", body)
                for row in rows:
                    external = (row.get("properties") or {}).get("hs_call_external_id")
                    if external and external not in found:
                        found[external] = str(row["id"])
                if not after:
                    break
                body = {**body, "after": after}
        return found

    # -- logging -------------------------------------------------------------------------
    def log_calls(self, calls: list[CallSnapshot]) -> dict[int, LogResult | CrmError]:
        """Log many calls: each call's result, or the error that concerns it alone.

        One call goes through `log_call` (the single-object endpoints: the same one request
        a batch of one would cost, and the path the dry run and `mappings try` show); more
        go through `hubspot_batch`, a few requests for all of them.
        """
        if len(calls) == 1:
            (call,) = calls
            try:
                return {call.id: self.log_call(call)}
            except CrmError as exc:
                return {call.id: exc}
        return log_batch(self, calls)

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

    def call_owner(
        self, call: CallSnapshot, primary: Contact | None, note: str | None
    ) -> tuple[str | None, str | None]:
        """(owner id, note): the agent's owner, else the contact's, else the default; an
        agent HubSpot does not know is noted, not fatal."""
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
        return owner_id, note

    def record_properties(
        self, call: CallSnapshot, primary: Contact | None, owner_id: str | None
    ) -> dict[str, Any]:
        properties = self.call_properties(call, primary, owner_id)
        if call.crm_id or call.create_in_doubt:
            # An update states the owner even when there is none now: an owner set by an
            # earlier, less complete sync (a ring-group tie) must not stay.
            properties.setdefault("hubspot_owner_id", "")
        return properties

    def _log_call(self, call: CallSnapshot, *, fresh: bool) -> LogResult:
        contacts, note = self._contacts_for(call, fresh=fresh)
        primary = contacts[0] if contacts else None
        owner_id, note = self.call_owner(call, primary, note)
        properties = self.record_properties(call, primary, owner_id)
        crm_id, action = call.crm_id, "update"
        if crm_id is None and call.create_in_doubt:
            crm_id, action = self.find_logged_call(call.external_id), "recover"
        if crm_id:
            self.transport.update_call(crm_id, {"properties": properties})
            self.attach_new_contacts(call, crm_id, contacts)
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

    def attach_new_contacts(self, call: CallSnapshot, crm_id: str, contacts: list[Contact]) -> None:
        """The contact became known after the record was made (the number came in a later
        event, or a placeholder was created): attach it now."""
        primary = contacts[0] if contacts else None
        if primary is not None and primary.id != call.crm_contact_id:
            for contact in contacts:
                self.transport.associate_call(crm_id, "contacts", contact.id, ASSOC_CALL_TO_CONTACT)

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
