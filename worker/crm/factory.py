"""Choosing the CRM adapter for this process: HubSpot with a token, the dry run without."""

from __future__ import annotations

from worker.core.redis_conn import connect
from worker.core.settings import get_settings
from worker.crm.contact_cache import RedisContactCache
from worker.crm.dry_run import DryRunTransport, RecordingTransport
from worker.crm.hubspot import HubSpotCrm
from worker.crm.hubspot_transport import ClientTransport, Transport
from worker.crm.mapping_files import worker_mapping_files
from worker.crm.rate_limit import RateLimiter, hubspot_budgets

# One real adapter per process: it holds the HTTP pool and the owner cache.
_hubspot: HubSpotCrm | None = None


def _adapter(transport: Transport, cached: bool) -> HubSpotCrm:
    settings = get_settings()
    files = worker_mapping_files()
    assert files.hubspot is not None
    cache = None
    if cached:
        cache = RedisContactCache(
            connect(), settings.contact_cache_s, settings.contact_cache_miss_s
        )
    return HubSpotCrm(
        transport,
        files.hubspot,
        files.agents,
        settings.default_region,
        cache,
        locks=connect() if cached else None,
        platform_names=files.platform_names,
    )


def _live() -> HubSpotCrm:
    global _hubspot
    settings = get_settings()
    assert settings.hubspot_access_token is not None
    if _hubspot is None:
        limiter = RateLimiter(connect(), hubspot_budgets(settings))
        transport = ClientTransport(
            settings.hubspot_access_token.get_secret_value(),
            settings.hubspot_base_url,
            settings.hubspot_timeout_s,
            limiter,
        )
        _hubspot = _adapter(transport, cached=True)
    return _hubspot


def crm_for_call(call_id: int) -> HubSpotCrm:
    """The configured CRM for logging a call: the dry run stores what it would send."""
    if get_settings().dry_run:
        return _adapter(DryRunTransport(call_id), cached=False)
    return _live()


def crm_for_lookups() -> HubSpotCrm:
    """The configured CRM for read-mostly work (screen-pops): a dry run records nothing."""
    if get_settings().dry_run:
        return _adapter(RecordingTransport(), cached=False)
    return _live()


def forget_crm() -> None:
    """Drop the cached adapter (tests that change settings)."""
    global _hubspot
    _hubspot = None
