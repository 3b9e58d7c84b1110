"""Choosing the CRM adapter for this process: HubSpot with a token, the dry run without."""

from __future__ import annotations

from worker.crm.dry_run import DryRunTransport
from worker.crm.hubspot import ClientTransport, HubSpotCrm
from worker.mapping_files import worker_mapping_files
from worker.settings import get_settings

# One real adapter per process: it holds the HTTP pool and the owner cache.
_hubspot: HubSpotCrm | None = None


def crm_for_call(call_id: int) -> HubSpotCrm:
    """The configured CRM: HubSpot with a token, the dry run without one."""
    global _hubspot
    settings = get_settings()
    files = worker_mapping_files()
    assert files.hubspot is not None
    if settings.hubspot_access_token is None:
        return HubSpotCrm(
            DryRunTransport(call_id), files.hubspot, files.agents, settings.default_region
        )
    if _hubspot is None:
        transport = ClientTransport(
            settings.hubspot_access_token.get_secret_value(),
            settings.hubspot_base_url,
            settings.hubspot_timeout_s,
        )
        _hubspot = HubSpotCrm(transport, files.hubspot, files.agents, settings.default_region)
    return _hubspot


def forget_crm() -> None:
    """Drop the cached adapter (tests that change settings)."""
    global _hubspot
    _hubspot = None
