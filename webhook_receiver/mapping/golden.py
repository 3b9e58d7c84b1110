"""Golden files: the canonical events each fixture must give, kept next to it.

Zulip keeps each webhook integration's fixtures beside the messages they must produce;
callhook does the same with mapping files: ``tests/platforms/<platform>/fixtures/<name>``
(a body as the platform sends it: ``.json``, ``.form`` or ``.query``) and
``<stem>.events.json`` (for ``.json``) or ``<name>.events.json`` (for the others) holding
what the mapping makes of it. One parametrised test (tests/test_golden_files.py) checks
them all; after a deliberate change, ``callhook mappings golden --update`` writes them again
and the diff shows what the change did to every fixture.

The result is one of ``{"events": [...]}``, ``{"ignored": reason}`` or
``{"unmapped": reason}``: a fixture that documents a refusal is as much a promise as one
that documents a call. Numbers are read with the region ``GOLDEN_REGION`` unless the
mapping names its own, so a golden file says the same on every machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook_receiver.mapping.engine import MappingError, map_payload
from webhook_receiver.mapping.payloads import BadPayload, query_pairs, read_payload
from worker.crm.mapping_files import MappingFiles

GOLDEN_REGION = "FR"
BODY_SUFFIXES = (".json", ".form", ".query")
GOLDEN_SUFFIX = ".events.json"


def is_fixture(path: Path) -> bool:
    """A platform body (not a golden file, not a note such as SOURCES.md)."""
    return path.suffix in BODY_SUFFIXES and not path.name.endswith(GOLDEN_SUFFIX)


def golden_path(fixture: Path) -> Path:
    stem = fixture.stem if fixture.suffix == ".json" else fixture.name
    return fixture.with_name(stem + GOLDEN_SUFFIX)


def read_fixture(fixture: Path) -> dict[str, Any]:
    """The fixture parsed as the receiver parses a delivery of its format."""
    raw = fixture.read_bytes().strip()
    fmt = fixture.suffix.lstrip(".")  # BODY_SUFFIXES are the formats' names
    return read_payload(fmt, raw, query_pairs(raw.decode("utf-8")) if fmt == "query" else [])


def expected_of(files: MappingFiles, platform: str, fixture: Path) -> dict[str, Any]:
    """What the mapping of `platform` makes of `fixture` today."""
    mapping = files.platforms[platform]
    try:
        result = map_payload(mapping, read_fixture(fixture), default_region=GOLDEN_REGION)
    except (BadPayload, MappingError) as exc:
        return {"unmapped": str(exc)}
    if result.ignored:
        return {"ignored": result.ignored}
    return {"events": [event.to_json() for event in result.events]}


def render(expected: dict[str, Any]) -> str:
    return json.dumps(expected, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


@dataclass
class GoldenCheck:
    fixture: Path
    golden: Path
    expected: str  # what the golden file should hold
    current: str | None  # what it holds (None: missing)

    @property
    def ok(self) -> bool:
        return self.current == self.expected


def platform_fixtures(root: Path, files: MappingFiles) -> list[tuple[str, Path]]:
    """(platform, fixture) for every folder of `root` named after a loaded mapping."""
    found = []
    for platform in sorted(files.platforms):
        folder = root / platform / "fixtures"
        if folder.is_dir():
            found += [(platform, p) for p in sorted(folder.iterdir()) if is_fixture(p)]
    return found


def check(files: MappingFiles, platform: str, fixture: Path) -> GoldenCheck:
    golden = golden_path(fixture)
    current = golden.read_text(encoding="utf-8") if golden.exists() else None
    return GoldenCheck(fixture, golden, render(expected_of(files, platform, fixture)), current)
