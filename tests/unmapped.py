"""What every test of a delivery the mapping cannot read checks: answered as the mapping's
``on_unmapped`` says, and kept, with the reason, for ``callhook events replay``."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from worker.core.db import get_engine
from worker.core.models import EventStatus, WebhookEvent


def stored(event_id: int) -> WebhookEvent:
    with Session(get_engine()) as session:
        row = session.get(WebhookEvent, event_id)
        assert row is not None, f"no webhook_events row {event_id}"
        return row


def assert_kept_unmapped(
    response: Any, reason_start: str, *, refused: bool = False
) -> WebhookEvent:
    """`response` kept the delivery as unmapped, its reason starting with `reason_start`.

    Accepted (`on_unmapped: accept`, every shipped platform): 200 {"status": "unmapped"}.
    Refused (`refuse`): 422 {"error": "unmapped"}. Either way the row holds the reason.
    """
    body = response.json
    if refused:
        assert (response.status_code, body["error"]) == (422, "unmapped"), body
    else:
        assert (response.status_code, body["status"]) == (200, "unmapped"), body
    assert body["reason"].startswith(reason_start), body["reason"]
    row = stored(body["id"])
    assert row.status == EventStatus.UNMAPPED
    assert row.error == body["reason"]
    assert row.canonical == [] and row.enqueued_at is None  # nothing reached the worker
    return row
