"""What HubSpot would receive for a payload, computed without a database or network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.core.events import CallEvent, Stage
from worker.core.fold import apply_event
from worker.core.models import Call
from worker.crm.base import CallSnapshot
from worker.crm.dry_run import RecordingTransport
from worker.crm.hubspot import HubSpotCrm
from worker.crm.mapping_files import MappingFiles


def preview_hubspot_request(
    events: list[CallEvent], files: MappingFiles, region: str
) -> list[dict[str, Any]]:
    """Fold `events` per call as the worker would, end them, and record the requests."""
    assert files.hubspot is not None
    calls: dict[tuple[str, str], Call] = {}
    now = datetime.now(UTC)
    for event in events:
        # As the receiver does: an event without a time happened when it arrived.
        event = event.model_copy(update={"occurred_at": event.occurred_at or now})
        # A leg folds into the call it belongs to, as in the worker.
        call_id = event.parent_call_id or event.call_id
        call = calls.setdefault(
            (event.platform, call_id),
            Call(id=len(calls) + 1, platform=event.platform, platform_call_id=call_id),
        )
        apply_event(call, event)
    transport = RecordingTransport()
    crm = HubSpotCrm(
        transport, files.hubspot, files.agents, region, platform_names=files.platform_names
    )
    for call in calls.values():
        if not call.ended:
            apply_event(
                call,
                CallEvent(platform=call.platform, call_id=call.platform_call_id, stage=Stage.ENDED),
            )
        crm.log_call(CallSnapshot.of(call))
    return transport.requests
