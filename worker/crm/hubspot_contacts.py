"""Which HubSpot contacts a phone number belongs to: one number, or a flush's many at once.

Apart from the call records because it is the part with HubSpot's quirks of its own: the
calculated phone properties match on the national number alone (so the country is
checked here, on what the contact stored), the lookup cache is shared with screen-pops,
and a flush looks up all its missing numbers with one search (`IN`) that is split back
per number with the very same check as a single lookup.
"""

from __future__ import annotations

from typing import Any, Protocol

from worker.core.agents import AgentDirectory
from worker.core.events import Direction
from worker.core.numbers import contact_e164s, national_number
from worker.crm.base import CallSnapshot, Contact
from worker.crm.contacts import ensure_contact
from worker.crm.hubspot_config import HubSpotMapping
from worker.crm.hubspot_transport import Transport

# HubSpot's search: at most 200 results a page; `IN` values kept to 100 a filter (HubSpot
# documents no cap; 100 matches a batch's inputs).
SEARCH_PAGE = 200
IN_VALUES = 100


class ContactCache(Protocol):
    """Where lookups are remembered across processes (Redis in the worker and web)."""

    def get(self, e164: str) -> tuple[bool, list[Contact]]: ...
    def put(self, e164: str, contacts: list[Contact]) -> None: ...
    def forget(self, e164: str) -> None: ...


class ContactMatching:
    """The contact lookups of `HubSpotCrm` (a mixin: it shares the adapter's state)."""

    transport: Transport
    mapping: HubSpotMapping
    agents: AgentDirectory
    region: str
    cache: ContactCache | None
    locks: Any
    company_numbers: set[str]

    def owner_for_agent(self, platform: str, agent_ident: str | None) -> str | None:
        raise NotImplementedError

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
        return self._matching(self.transport.search_contacts(self.contact_search_body(e164)), e164)

    def _matching(self, results: list[dict[str, Any]], e164: str) -> list[Contact]:
        """The rows that are `e164`'s contacts, country checked (see `find_contacts_by_number`)."""
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

    def contacts_for_numbers(self, numbers: list[str]) -> dict[str, list[Contact]]:
        """Each number's contacts: the cache first, then one search with `IN` over all the
        numbers it does not know (per 100), split back per number; every answer, misses
        included, goes into the cache for the next flush and the screen-pops."""
        found: dict[str, list[Contact]] = {}
        missing: list[str] = []
        for e164 in dict.fromkeys(numbers):
            if e164 in self.company_numbers:
                found[e164] = []
                continue
            if self.cache is not None:
                known, contacts = self.cache.get(e164)
                if known:
                    found[e164] = contacts
                    continue
            missing.append(e164)
        if len(missing) == 1:
            found[missing[0]] = self.find_contacts_by_number(missing[0], recheck_miss=True)
            return found
        for start in range(0, len(missing), IN_VALUES):
            chunk = missing[start : start + IN_VALUES]
            rows = self._search_many(chunk)
            for e164 in chunk:
                found[e164] = self._matching(self._rows_for(rows, e164), e164)
                if self.cache is not None:
                    self.cache.put(e164, found[e164])
        return found

    def _search_many(self, numbers: list[str]) -> list[dict[str, Any]]:
        """Every contact whose number is one of these, most recently modified first."""
        lookup = self.mapping.contact_lookup
        nationals = sorted({national_number(n) for n in numbers})
        groups = [
            {"filters": [{"propertyName": p, "operator": "IN", "values": nationals}]}
            for p in lookup.national_properties
        ] + [
            {"filters": [{"propertyName": p, "operator": "IN", "values": sorted(numbers)}]}
            for p in lookup.e164_properties
        ]
        wanted = list(
            dict.fromkeys(
                [*lookup.properties, *lookup.national_properties, *lookup.e164_properties]
            )
        )
        body: dict[str, Any] = {
            "filterGroups": groups[:5],
            "properties": wanted,
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
            "limit": SEARCH_PAGE,
        }
        rows: list[dict[str, Any]] = []
        while True:
            page, after = self.transport.search_page("contacts", body)
            rows.extend(page)
            if not after:
                return rows
            body = {**body, "after": after}

    def _rows_for(self, rows: list[dict[str, Any]], e164: str) -> list[dict[str, Any]]:
        """The rows a search for `e164` alone would have answered (the same properties)."""
        lookup = self.mapping.contact_lookup
        national = national_number(e164)
        return [
            row
            for row in rows
            if any((row["properties"] or {}).get(p) == national for p in lookup.national_properties)
            or any((row["properties"] or {}).get(p) == e164 for p in lookup.e164_properties)
        ]

    def _contacts_for(
        self,
        call: CallSnapshot,
        *,
        fresh: bool,
        known: dict[str, list[Contact]] | None = None,
    ) -> tuple[list[Contact], str | None]:
        """The contacts to log the call on, and a note when that was a choice (`known`:
        numbers already looked up by `contacts_for_numbers`)."""
        policy = self.mapping.contact_lookup
        number = call.external_number
        if not number or call.direction == Direction.INTERNAL:
            return [], None
        if number in self.company_numbers:
            return [], f"{number} is one of the company's own numbers: no contact"
        if known is not None and number in known:
            found = known[number]
        else:
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
