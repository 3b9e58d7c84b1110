"""Value conversions a mapping file can name with `type:`.

Each takes the raw value from the payload and returns the canonical one, or
raises ``ValueError`` with a message fit to show the platform's admin in a 422.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import phonenumbers

# Platforms write "no number" in many ways; none of them is a customer to look up.
ANONYMOUS = {"", "anonymous", "unknown", "private", "restricted", "unavailable", "withheld"}


def to_e164(raw: object, region: str) -> str | None:
    """Normalise a phone number to E.164, or None when it is not a public number.

    Several platforms (Kavkom among them) send international numbers without the
    leading ``+`` ("33612345678"): when the number does not parse as a national
    number of ``region``, it is tried again as an international one. Short
    internal extensions ("1001") parse as neither and give None.
    """
    text = str(raw).strip()
    if text.lower() in ANONYMOUS:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    candidates = [text]
    if not text.startswith("+") and re.fullmatch(r"[\d\s().-]{8,}", text):
        candidates.append("+" + re.sub(r"\D", "", text))
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _number(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {raw!r}")
    if isinstance(raw, int | float):
        return float(raw)
    try:
        return float(str(raw).strip())
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None


def from_epoch(raw: object, scale: float) -> datetime:
    value = _number(raw) / scale
    if value <= 0:
        raise ValueError(f"not a timestamp: {raw!r}")
    return datetime.fromtimestamp(value, UTC)


# KAZOO stamps events in Gregorian seconds: seconds since 0000-01-01, not since 1970.
GREGORIAN_UNIX_OFFSET_S = 62_167_219_200


def from_gregorian(raw: object) -> datetime:
    return from_epoch(_number(raw) - GREGORIAN_UNIX_OFFSET_S, 1)


def from_json(raw: object) -> object:
    """A value that arrives as JSON text inside the payload; anything else passes through."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"not JSON text: {raw[:40]!r}") from None


def from_iso(raw: object, zone: str) -> datetime:
    text = str(raw).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {raw!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.astimezone(UTC)


def from_format(raw: object, fmt: str, zone: str) -> datetime:
    try:
        parsed = datetime.strptime(str(raw).strip(), fmt)
    except ValueError:
        raise ValueError(f"{raw!r} does not match the time format {fmt!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.astimezone(UTC)


def from_hms(raw: object) -> int:
    """Durations written as ``[[h:]m:]s``."""
    parts = str(raw).strip().split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"not a duration: {raw!r}") from None
    if not 1 <= len(numbers) <= 3 or any(n < 0 for n in numbers):
        raise ValueError(f"not a duration: {raw!r}")
    seconds = 0.0
    for n in numbers:
        seconds = seconds * 60 + n
    return round(seconds)


def duration(raw: object, unit_s: float) -> int:
    value = _number(raw) * unit_s
    if value < 0:
        raise ValueError(f"negative duration: {raw!r}")
    return round(value)


def to_bool(raw: object) -> bool:
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "y", "on"}:
        return True
    if text in {"0", "false", "no", "n", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


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
