"""What a platform's user listing returns (``*_directory`` modules), apart from the listing.

``directory.py`` asks every ``*_directory`` module in turn, and those need these types:
kept here, the two sides import this module instead of each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A company with more users than MAX_PAGES pages hold is told the listing was cut.
MAX_PAGES = 20


@dataclass(frozen=True)
class PlatformUser:
    """One account of a platform, as agents.yaml would name it.

    ``ident`` is what goes under ``extensions.<platform>`` (docs/agents.md, "Identifiers
    per platform"); ``detail`` is what helps a person recognise it (an extension number,
    a device's SIP username). Never a password or token.
    """

    platform: str
    ident: str
    name: str = ""
    email: str = ""
    detail: str = ""
    # Other spellings of the person's name (e.g. UIS's first and last name beside its
    # "Last First Patronymic" full name), tried when matching by name.
    other_names: tuple[str, ...] = ()
    enabled: bool = True


def listed_text(value: Any, *, numbers: bool = True) -> str:
    """A listing's text field with its whitespace folded; "" for anything else (null, a
    list, a nested object). `numbers`: an integer is text too (Kavkom, UIS ids)."""
    kinds = (str, int) if numbers else (str,)
    return " ".join(str(value).split()) if isinstance(value, kinds) else ""


def listed_email(value: str) -> str:
    """An address, or "" when the field holds something else (a login name)."""
    return value if "@" in value else ""
