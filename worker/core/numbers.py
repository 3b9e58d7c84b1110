"""Phone numbers: the one place callhook reads, checks and writes them.

Every part of callhook meets numbers (webhooks, HubSpot contacts, click-to-call, the
console's search), and each used to carry its own few lines of ``phonenumbers``; the
copies differed in the details that matter (which region a national number reads in,
valid or merely possible, E.164 or display form). Here each rule is written once:

- `display`: the international form people read ("+33 6 12 34 56 78");
- `to_e164`: a number as a platform sends it → E.164, valid or at least plausible
  (the webhook mapping's rule: callers on ranges newer than the metadata are real);
- `valid_number` / `valid_e164`: what a person typed, only when it is a valid number
  (click-to-call, the console's search, a contact created by an agent);
- `dialable_e164`: a destination already in strict E.164 (a platform client's last check);
- `national_number`, `contact_e164s`: HubSpot's searchable form and a contact's numbers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import phonenumbers

# Platforms write "no number" in many ways; none of them is a customer to look up.
ANONYMOUS = {"", "anonymous", "unknown", "private", "restricted", "unavailable", "withheld"}
_E164_SHAPE = re.compile(r"\+[1-9]\d{6,14}")


def display(e164: str | None, raw: str | None = None) -> str:
    """'+33 6 12 34 56 78' for '+33612345678'; the raw text when it is not a number."""
    if not e164:
        return raw or "unknown number"
    number = phonenumbers.parse(e164)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def e164(number: phonenumbers.PhoneNumber) -> str:
    """The canonical form callhook stores and compares: '+33612345678'."""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_plausible_number(number: phonenumbers.PhoneNumber) -> bool:
    """A possible length for its country's numbers, dialable from anywhere."""
    return (
        phonenumbers.is_possible_number_with_reason(number)
        == phonenumbers.ValidationResult.IS_POSSIBLE
    )


def to_e164(raw: object, region: str) -> str | None:
    """Normalise a phone number to E.164 (`_to_e164`), remembering the last few thousand.

    Parsing costs more than the rest of mapping a delivery, and the same numbers come
    back all day (the company's own lines, agents' extensions, callers calling again).
    """
    return _to_e164(str(raw), region)


@functools.lru_cache(maxsize=8192)
def _to_e164(raw: str, region: str) -> str | None:
    """Normalise a phone number to E.164, or None when it is not a public number.

    Several platforms (Kavkom among them) send international numbers without the
    leading ``+`` ("33612345678"): when the number does not parse as a national
    number of ``region``, it is tried again as an international one. Short
    internal extensions ("1001") parse as neither and give None.

    A number valid per ``phonenumbers``' metadata wins; failing that, one of a possible
    length for its country (``IS_POSSIBLE``, never "local only") is kept as well: ranges
    newer than the metadata (``+44 7700 900123``) are real callers whose contacts hold
    exactly those digits. Click-to-call still dials only valid numbers
    (worker/telephony/dialing.py).
    """
    text = str(raw).strip()
    if text.lower() in ANONYMOUS:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    candidates = [text]
    if not text.startswith("+") and re.fullmatch(r"[\d\s().-]{8,}", text):
        candidates.append("+" + re.sub(r"\D", "", text))
    parsed = []
    for candidate in candidates:
        try:
            parsed.append(phonenumbers.parse(candidate, region))
        except phonenumbers.NumberParseException:
            continue
    for accept in (phonenumbers.is_valid_number, is_plausible_number):
        for number in parsed:
            if accept(number):
                return e164(number)
    return None


def valid_number(raw: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """What a person typed, parsed ("06 12…" reads in `region`), if it is a valid number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def valid_e164(raw: str, region: str | None) -> str | None:
    """E.164 for what a person typed, when it is a whole valid number (in any format:
    "06 12 34 56 78", "+33 6…", "0033 6…"); None otherwise."""
    number = valid_number(raw, region)
    return e164(number) if number is not None else None


def dialable_e164(text: object) -> str | None:
    """`text` as canonical E.164 when it is already strictly E.164 (``+`` and digits,
    nothing else) and valid; None otherwise. A national number would be dialled in
    whatever country the PBX assumes, so none is read here."""
    if not isinstance(text, str) or not _E164_SHAPE.fullmatch(text):
        return None
    return valid_e164(text, None)


def national_number(e164_text: str) -> str:
    """The form HubSpot's calculated searchable phone properties hold: no country code."""
    return str(phonenumbers.parse(e164_text).national_number)


def contact_e164s(raws: Iterable[object], region: str) -> tuple[set[str], set[str]]:
    """The E.164 forms of a contact's numbers: (valid ones, merely possible ones).

    A valid number carries a country the caller's must equal. A possible-but-invalid one
    (a range newer than the metadata: +44 7700 900123) proves nothing against a caller,
    but equal digits are a match. Unparseable ones are left out.
    """
    valid, possible = set(), set()
    for raw in raws:
        if not raw:
            continue
        try:
            number = phonenumbers.parse(str(raw), region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            valid.add(e164(number))
        elif phonenumbers.is_possible_number(number):
            possible.add(e164(number))
    return valid, possible
