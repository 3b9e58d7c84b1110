"""Links from the console to the CRM records callhook wrote.

A record's URL may need the CRM's account (HubSpot's portal id), which the pages must not
ask for on every load: the adapter caches it (`CrmLookups.record_url`), and a page whose
first link fails shows record ids without links rather than asking again per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from worker.core.settings import get_settings
from worker.crm.base import CrmError, CrmLookups


@dataclass
class RecordLinks:
    """Builds a page's record links through the CRM adapter; none in a dry run without
    ``HUBSPOT_PORTAL_ID`` (there is no account to link to)."""

    crm: CrmLookups | None

    @classmethod
    def current(cls) -> RecordLinks:
        from worker.crm.factory import crm_for_lookups

        settings = get_settings()
        if settings.dry_run and not settings.hubspot_portal_id:
            return cls(None)
        return cls(crm_for_lookups())

    def url(self, record_id: str | None, kind: str) -> str | None:
        if self.crm is None or not record_id:
            return None
        try:
            return self.crm.record_url(kind, record_id)
        except (CrmError, redis.RedisError, ValueError):
            self.crm = None  # the CRM did not answer: this page goes without links
            return None

    def call(self, crm_id: str | None) -> str | None:
        return self.url(crm_id, "call")

    def contact(self, contact_id: str | None) -> str | None:
        return self.url(contact_id, "contact")
