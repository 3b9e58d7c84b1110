"""Links from the console to the HubSpot records callhook wrote.

A record's URL needs the portal id, which the pages must not ask HubSpot for on every
load: it comes from the settings or from the account details the screen-pops already
cache, and a page without it shows record ids without links.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from worker.core.settings import get_settings


@dataclass(frozen=True)
class HubSpotLinks:
    """Builds record URLs (https://<host>/contacts/<portal>/record/<type>/<id>) when the
    portal is known: ``HUBSPOT_PORTAL_ID``, or HubSpot's account details, asked for at most
    once a day and shared through Redis with the screen-pops (`pops.account_details`). If
    HubSpot does not answer, the pages show record ids without links."""

    host: str
    portal: str | None

    @classmethod
    def current(cls) -> HubSpotLinks:
        from worker.core.redis_conn import connect
        from worker.crm.base import CrmError
        from worker.crm.factory import crm_for_lookups
        from worker.tasks.pops import hubspot_portal

        settings = get_settings()
        if settings.hubspot_portal_id:
            return cls("app.hubspot.com", settings.hubspot_portal_id)
        if settings.dry_run:  # a dry run has no portal to link to
            return cls("app.hubspot.com", None)
        try:
            host, portal = hubspot_portal(crm_for_lookups(), connect(), "")
        except (CrmError, redis.RedisError, ValueError):
            return cls("app.hubspot.com", None)
        return cls(host, portal or None)

    def url(self, record_id: str | None, object_type: str) -> str | None:
        from worker.tasks.pops import record_link

        return record_link(self.host, self.portal or "", object_type, record_id)

    def call(self, crm_id: str | None) -> str | None:
        return self.url(crm_id, "0-48")

    def contact(self, contact_id: str | None) -> str | None:
        return self.url(contact_id, "0-1")
