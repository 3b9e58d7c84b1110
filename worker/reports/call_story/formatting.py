"""How the console writes a call's time, duration and number.

Shared by the list, the story and the verdict's sentences, so a time reads the same
everywhere (UTC, to the second) and a number the same as the agent's card shows it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import phonenumbers

from worker.core.models import Call
from worker.core.numbers import display


def when(call: Call) -> datetime:
    """When a call happened, as the list shows it (a call seen only by its end has no start)."""
    return call.started_at or call.answered_at or call.ended_at or call.updated_at


def duration_text(seconds: int | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(max(0, seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def number_text(call: Call) -> str:
    try:
        return display(call.external_number, call.external_number_raw)
    except phonenumbers.NumberParseException:
        return call.external_number or call.external_number_raw or ""


def utc_stamp(moment: datetime | None) -> str:
    """A time in UTC to the second, or "unknown" (the verdict's sentences)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"


def stamp(moment: datetime | None) -> str:
    """How the console writes a time: UTC, to the second."""
    return utc_stamp(moment) if moment else ""
