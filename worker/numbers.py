"""Phone numbers as people read them."""

from __future__ import annotations

import phonenumbers


def display(e164: str | None, raw: str | None = None) -> str:
    """'+33 6 12 34 56 78' for '+33612345678'; the raw text when it is not a number."""
    if not e164:
        return raw or "unknown number"
    number = phonenumbers.parse(e164)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
