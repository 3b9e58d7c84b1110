"""Contacts callhook creates: one placeholder per unknown number, never two.

An agent clicks "create contact" on an unknown caller's card (and, when the CRM file
asks for it, the call log creates one). Both go through `ensure_contact`, which holds
a Redis lock on the number and remembers what it created in the shared lookup cache:
HubSpot's search index lags its writes by seconds, so a search alone would let a
second click create a second contact.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from worker.core.numbers import display
from worker.crm.base import Contact


class ContactCrm(Protocol):
    """What `ensure_contact` needs of the CRM adapter (``worker.crm.hubspot.HubSpotCrm``).

    A protocol, not an import: the adapter calls `ensure_contact` when its CRM file asks
    for placeholder contacts, and importing it back would make the two modules a cycle.
    """

    transport: Any  # has create_contact(body) -> id
    cache: Any  # None, or has put(e164, contacts)

    def find_contact_by_number(self, e164: str, *, recheck_miss: bool = False) -> Contact | None:
        """The contact HubSpot has for `e164`, if any."""
        ...


def placeholder_properties(e164: str, owner_id: str | None) -> dict[str, str]:
    """'Caller' '+33 6 12 34 56 78': recognisable in lists, easy to rename."""
    props = {"firstname": "Caller", "lastname": display(e164, None), "phone": e164}
    if owner_id:
        props["hubspot_owner_id"] = owner_id
    return props


def ensure_contact(
    crm: ContactCrm, client: redis.Redis, e164: str, owner_id: str | None
) -> tuple[Contact, bool]:
    """The contact for `e164`, created as a placeholder if none exists; (contact, created)."""
    with client.lock(f"callhook:lock:contact:{e164}", timeout=30, blocking_timeout=30):
        found = crm.find_contact_by_number(e164, recheck_miss=True)
        if found is not None:
            return found, False
        properties = placeholder_properties(e164, owner_id)
        contact = Contact(crm.transport.create_contact({"properties": properties}), properties)
        if crm.cache is not None:
            crm.cache.put(e164, [contact])
        return contact, True
