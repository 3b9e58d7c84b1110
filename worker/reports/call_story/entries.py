"""What a call's timeline is made of: one kind of entry per thing that happened to it.

Each entry has ``at`` (its place in time), ``kind`` (how the template shows it) and
``ok`` (whether it went well), so the timeline sorts and renders them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class Delivery:
    """One webhook delivery that fed the call, and the canonical events it became."""

    kind = "delivery"
    at: datetime
    id: int
    platform: str
    method: str
    content_type: str
    status: str
    error: str
    query: str
    body: str
    truncated: bool
    events: list[tuple[str, str]]  # (stage, canonical event as pretty JSON)
    leg: str | None  # the merged leg's platform call id it was first folded into
    processed_at: datetime | None

    @property
    def ok(self) -> bool:
        return self.status in ("processed", "pending", "ignored")


@dataclass
class Attempt:
    """One attempt to write the call to HubSpot, with its requests when recorded."""

    kind = "attempt"
    at: datetime
    action: str
    ok: bool
    http_status: int | None
    error: str
    crm_id: str | None
    duration_ms: int | None
    requests: list[dict[str, Any]]
    leg: str | None


@dataclass
class DryRun:
    kind = "dry_run"
    at: datetime
    method: str
    path: str
    body: str
    ok = True


@dataclass
class Pop:
    kind = "pop"
    at: datetime
    agent_email: str
    contact_name: str | None
    ok = True


@dataclass
class Dial:
    kind = "dial"
    at: datetime
    agent_email: str
    requested: str
    destination: str | None
    result: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.result == "placed"
