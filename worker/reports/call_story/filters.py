"""The calls list's search: its query parameters read and validated, or refused with why.

The web layer parses nothing itself: it hands the page's query parameters here and shows
a `FilterError`'s reason with the 400, so every bound on what an operator can type
(lengths, dates, digits) lives in one place, next to the values it produces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from worker.core.events import Direction
from worker.reports.call_story.statuses import STATUSES

# The calls list's query parameters (`from`/`to` are UTC days, `before` the keyset).
FILTER_PARAMS = ("platform", "direction", "agent", "number", "status", "from", "to", "before")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ID = re.compile(r"[0-9]{1,18}")
_NUMBER_CHARS = re.compile(r"[0-9+()./\s-]{1,40}")


class FilterError(ValueError):
    """A search parameter the list cannot use: the reason is shown with the 400."""


@dataclass(frozen=True)
class CallFilters:
    """The calls list's search, as validated values (each None when not asked for)."""

    platform: str | None = None
    direction: str | None = None
    agent: str | None = None
    number: str | None = None
    status: str | None = None
    since: date | None = None  # `from`, inclusive, 00:00 UTC
    until: date | None = None  # `to`, inclusive, through 24:00 UTC
    before: int | None = None  # keyset: calls with a smaller id (older)

    def query_args(self, **override: Any) -> dict[str, Any]:
        """The parameters that give this search again (for the "older" link)."""
        values = {
            "platform": self.platform,
            "direction": self.direction,
            "agent": self.agent,
            "number": self.number,
            "status": self.status,
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "before": self.before,
        }
        values.update(override)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _text(args: Mapping[str, str], name: str, limit: int) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > limit:
        raise FilterError(f"{name} is longer than {limit} characters")
    return value or None


def _day(args: Mapping[str, str], name: str) -> date | None:
    value = _text(args, name, 10)
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(
            f"{name} must be a date written YYYY-MM-DD (UTC), not {value!r}"
        ) from None


def parse_filters(args: Mapping[str, str], platforms: Iterable[str]) -> CallFilters:
    """The search from the page's query parameters; FilterError says what is wrong."""
    platform = _text(args, "platform", 64)
    if platform is not None and platform not in set(platforms):
        raise FilterError(f"unknown platform {platform!r}")
    direction = _text(args, "direction", 16)
    if direction is not None and direction not in {d.value for d in Direction}:
        raise FilterError("direction must be inbound, outbound or internal")
    status = _text(args, "status", 16)
    if status is not None and status not in STATUSES:
        raise FilterError(f"status must be one of {', '.join(STATUSES)}")
    number = _text(args, "number", 40)
    if number is not None and (
        not _NUMBER_CHARS.fullmatch(number) or len(re.sub(r"\D", "", number)) < 3
    ):
        raise FilterError("number must be at least 3 digits (spaces, dots, dashes, + allowed)")
    since, until = _day(args, "from"), _day(args, "to")
    if since and until and since > until:
        raise FilterError("from is after to")
    before = _text(args, "before", 18)
    if before is not None and not _ID.fullmatch(before):
        raise FilterError("before must be a call id (digits)")
    return CallFilters(
        platform=platform,
        direction=direction,
        agent=_text(args, "agent", 200),
        number=number,
        status=status,
        since=since,
        until=until,
        before=int(before) if before else None,
    )
