"""The words DIAL_ALLOWED_TYPES and DIAL_ALLOWED_COUNTRIES may hold, and their checks.

Apart from ``worker/telephony/dialing.py`` (which applies the policy) because the settings
validate these two variables at start-up: the settings importing the dialing module,
which imports the platform clients, which import the settings, was a cycle.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType

ANY_COUNTRY = "*"
NON_GEOGRAPHIC = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY  # "001"

# phonenumbers' PhoneNumberType members, by their lower-case names ("fixed_line", ...).
TYPE_NAMES: dict[str, int] = {
    name.lower(): value
    for name, value in vars(PhoneNumberType).items()
    if name.isupper() and isinstance(value, int)
}
_T = PhoneNumberType
NEVER_TYPES = frozenset(
    {_T.PREMIUM_RATE, _T.SHARED_COST, _T.UAN, _T.PERSONAL_NUMBER, _T.PAGER, _T.UNKNOWN}
)
# How a refusal names a type to the agent.
TYPE_LABELS: dict[int, str] = {
    _T.FIXED_LINE: "a fixed-line number",
    _T.MOBILE: "a mobile number",
    _T.FIXED_LINE_OR_MOBILE: "a fixed-line or mobile number",
    _T.TOLL_FREE: "a toll-free number",
    _T.PREMIUM_RATE: "a premium-rate number",
    _T.SHARED_COST: "a shared-cost number",
    _T.VOIP: "a VoIP number",
    _T.PERSONAL_NUMBER: "a personal (follow-me) number",
    _T.PAGER: "a pager number",
    _T.UAN: "a universal access (company) number",
    _T.VOICEMAIL: "a voicemail access number",
    _T.UNKNOWN: "a number of unknown type",
}


def listed(text: str) -> list[str]:
    """The comma-separated names of `text`, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def normalise_allowed_types(text: str) -> str:
    """DIAL_ALLOWED_TYPES checked and normalised, or ValueError saying what is wrong."""
    names = [name.lower() for name in listed(text)]
    if not names:
        raise ValueError("name at least one number type, e.g. fixed_line,mobile")
    unknown = [name for name in names if name not in TYPE_NAMES]
    if unknown:
        raise ValueError(
            f"unknown number type(s) {', '.join(unknown)}; known: "
            + ", ".join(sorted(n for n in TYPE_NAMES if TYPE_NAMES[n] not in NEVER_TYPES))
        )
    never = [name for name in names if TYPE_NAMES[name] in NEVER_TYPES]
    if never:
        raise ValueError(
            f"{', '.join(never)} can never be dialled by click-to-call (toll fraud: "
            "these numbers cost the caller more, or cannot be classified)"
        )
    return ",".join(dict.fromkeys(names))


def normalise_allowed_countries(text: str) -> str:
    """DIAL_ALLOWED_COUNTRIES checked and normalised, or ValueError saying what is wrong."""
    codes = [code.upper() for code in listed(text)]
    if codes == [ANY_COUNTRY]:
        return ANY_COUNTRY
    if ANY_COUNTRY in codes:
        raise ValueError("`*` (any country) stands alone; or list ISO codes, e.g. FR,BE")
    unknown = [code for code in codes if code not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: not ISO 3166 country code(s) phonenumbers knows "
            "(satellite and international networks can never be allowed)"
        )
    return ",".join(dict.fromkeys(codes))
