"""Value conversions a mapping file can name with `type:`.

Each takes the raw value from the payload and returns the canonical one, or
raises ``ValueError`` with a message fit to show the platform's admin (the
receiver answers with it and keeps the payload as ``unmapped``). Nothing else
escapes: infinite or huge numbers, times outside what a datetime can hold and
JSON text nested too deep are all a ValueError with the reason, never an
OverflowError or RecursionError that would answer 500.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from webhook_receiver.mapping.payloads import BadPayload, loads, quote
from worker.core import numbers

# Numbers are read one way everywhere (worker/core/numbers.py): "no number" spellings,
# E.164 for valid and possible-but-newer numbers, None for extensions.
ANONYMOUS = numbers.ANONYMOUS
to_e164 = numbers.to_e164


def _number(raw: object) -> float:
    """A finite number from a JSON number or its text ("12", "1.5e3"); else ValueError."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"expected a number, got {quote(raw)}")
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (ValueError, OverflowError):  # OverflowError: an int too large for a float
        raise ValueError(f"expected a number, got {quote(raw)}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {quote(raw)}")
    return value


def from_epoch(raw: object, scale: float) -> datetime:
    value = _number(raw) / scale
    if value <= 0:
        raise ValueError(f"not a timestamp: {quote(raw)}")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):  # past year 9999, or the platform's time_t
        raise ValueError(f"timestamp out of range: {quote(raw)}") from None


# KAZOO stamps events in Gregorian seconds: seconds since 0000-01-01, not since 1970.
GREGORIAN_UNIX_OFFSET_S = 62_167_219_200


def from_gregorian(raw: object) -> datetime:
    return from_epoch(_number(raw) - GREGORIAN_UNIX_OFFSET_S, 1)


def from_json(raw: object) -> object:
    """A value that arrives as JSON text inside the payload; anything else passes through.

    Read with the body's own bounds (`payloads.loads`): text inside a payload is no
    more trusted than the payload.
    """
    if not isinstance(raw, str):
        return raw
    try:
        return loads(raw)
    except BadPayload as exc:
        raise ValueError(f"not JSON text: {quote(raw[:40])}: {exc}") from None


def _in_utc(parsed: datetime, zone: str, raw: object) -> datetime:
    """`parsed` in UTC, read in `zone` when it carries no offset of its own."""
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # 9999-12-31T23:00-01:00 is past datetime.max in UTC
        raise ValueError(f"time out of range: {quote(raw)}") from None


def from_iso(raw: object, zone: str) -> datetime:
    text = str(raw).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {quote(raw)}") from None
    return _in_utc(parsed, zone, raw)


def from_format(raw: object, fmt: str, zone: str) -> datetime:
    try:
        parsed = datetime.strptime(str(raw).strip(), fmt)
    except ValueError:
        raise ValueError(f"{quote(raw)} does not match the time format {fmt!r}") from None
    return _in_utc(parsed, zone, raw)


def from_hms(raw: object) -> int:
    """Durations written as ``[[h:]m:]s``."""
    parts = str(raw).strip().split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"not a duration: {quote(raw)}") from None
    if not 1 <= len(numbers) <= 3 or any(not math.isfinite(n) or n < 0 for n in numbers):
        raise ValueError(f"not a duration: {quote(raw)}")
    seconds = 0.0
    for n in numbers:
        seconds = seconds * 60 + n
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {quote(raw)}")
    return round(seconds)


def duration(raw: object, unit_s: float) -> int:
    value = _number(raw) * unit_s
    if value < 0:
        raise ValueError(f"negative duration: {quote(raw)}")
    if not math.isfinite(value):  # 1e308 minutes
        raise ValueError(f"duration out of range: {quote(raw)}")
    return round(value)


def to_bool(raw: object) -> bool:
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "y", "on"}:
        return True
    if text in {"0", "false", "no", "n", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {quote(raw)}")


def convert(kind: str, raw: object, *, region: str, zone: str, fmt: str | None) -> object:
    """Apply the transform `kind` (one of schema.TRANSFORMS)."""
    match kind:
        case "str":
            return str(raw)
        case "json":
            return from_json(raw)
        case "int":
            return round(_number(raw))
        case "bool":
            return to_bool(raw)
        case "phone":
            return to_e164(raw, region)
        case "epoch_s":
            return from_epoch(raw, 1)
        case "epoch_ms":
            return from_epoch(raw, 1000)
        case "gregorian_s":
            return from_gregorian(raw)
        case "iso8601":
            return from_iso(raw, zone)
        case "datetime":
            if not fmt:
                raise ValueError("type datetime needs `format`")
            return from_format(raw, fmt, zone)
        case "seconds":
            return duration(raw, 1)
        case "milliseconds":
            return duration(raw, 0.001)
        case "minutes":
            return duration(raw, 60)
        case "hms":
            return from_hms(raw)
    raise ValueError(f"unknown type {kind!r}")


__all__ = ["ANONYMOUS", "convert", "to_e164"]
