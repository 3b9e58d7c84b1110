"""Links to HubSpot records, for screen-pop cards and the operator console.

A record's page is ``https://<UI host>/contacts/<portal>/record/<type>/<id>``. The portal
comes from ``HUBSPOT_PORTAL_ID``, else from HubSpot's account details, asked for at most
once a day and shared by every process through Redis: they hardly ever change, and an EU
portal has its own UI host.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

ACCOUNT_KEY = "callhook:hubspot:account"
ACCOUNT_CACHE_S = 86_400
DEFAULT_HOST = "app.hubspot.com"
# callhook's names for the records it links to -> HubSpot's object type ids.
OBJECT_TYPES = {"contact": "0-1", "company": "0-2", "deal": "0-3", "call": "0-48"}


def account_details(ask: Callable[[], dict[str, Any]], client: redis.Redis) -> dict[str, Any]:
    """HubSpot's account details (portal id, UI host), from Redis or, once a day, `ask`."""
    cached = client.get(ACCOUNT_KEY)
    if cached is None:
        cached = json.dumps(ask())
        client.set(ACCOUNT_KEY, cached, ex=ACCOUNT_CACHE_S)
    details = json.loads(cached)
    return details if isinstance(details, dict) else {}


def portal(
    ask: Callable[[], dict[str, Any]], client: redis.Redis, portal_id: str
) -> tuple[str, str]:
    """(UI host, portal id): `portal_id` (HUBSPOT_PORTAL_ID) on app.hubspot.com, else the
    account details; the portal is "" when HubSpot does not say."""
    if portal_id:
        return DEFAULT_HOST, portal_id
    details = account_details(ask, client)
    return details.get("uiDomain") or DEFAULT_HOST, str(details.get("portalId") or "")


def record_link(host: str, portal_id: str, kind: str, record_id: str | None) -> str | None:
    """A record's page in HubSpot; None without a portal or a record, for a dry run's
    made-up ids, or for a kind of record callhook does not link to."""
    object_type = OBJECT_TYPES.get(kind)
    if not portal_id or not record_id or object_type is None or record_id.startswith("dry-run"):
        return None
    return f"https://{host}/contacts/{portal_id}/record/{object_type}/{record_id}"
