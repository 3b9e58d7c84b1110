"""Trying a payload against a mapping: canonical events and the HubSpot requests, nothing kept.

Shared by the console's mapping sandbox and ``callhook mappings try``. The payload is read
exactly as the receiver reads a delivery (`payloads.read_delivery`, with the mapping's
``accept`` list), so a payload the sandbox reads is one a real delivery could
carry, and a format the platform's file refuses is refused here with the receiver's words.
Nothing touches the database, the broker or HubSpot: the requests come from
`preview.preview_hubspot_request`, which records them instead of sending.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from webhook_receiver.deliveries.preview import preview_hubspot_request
from webhook_receiver.mapping import MappingError, map_payload
from webhook_receiver.mapping.payloads import FORM_TYPE, BadPayload, read_delivery
from worker.crm.mapping_files import MappingFiles

# The formats an operator can choose, each as the (method, content type) a delivery has.
FORMATS: dict[str, tuple[str, str]] = {
    "json": ("POST", "application/json"),
    "form": ("POST", FORM_TYPE),
    "query": ("GET", ""),
}
FORMAT_LABELS = {"json": "JSON body", "form": "Form-encoded body", "query": "Query string (GET)"}


@dataclass
class TryResult:
    """What a payload becomes. Exactly one of `error`, `ignored`, or `events` says it."""

    platform: str
    error: str | None = None
    ignored: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # The HubSpot preview failed although the mapping read the payload (a hubspot.yaml
    # problem): the events are still shown.
    preview_error: str | None = None

    def events_json(self) -> str:
        return json.dumps(self.events, indent=2, ensure_ascii=False)

    def requests_json(self) -> str:
        return json.dumps(self.requests, indent=2, ensure_ascii=False)

    def as_text(self) -> str:
        """The CLI's output (``callhook mappings try``)."""
        if self.error is not None:
            return f"cannot be mapped: {self.error}"
        if self.ignored is not None:
            return f"ignored: {self.ignored}"
        lines = ["canonical events:", self.events_json()]
        if self.preview_error is not None:
            lines.append(f"no HubSpot preview: {self.preview_error}")
        else:
            lines += [
                "HubSpot requests once the call has ended (recorded, not sent; the contact "
                "search is shown as it would be sent, and finds no contact here):",
                self.requests_json(),
            ]
        return "\n".join(lines)


def guess_format(raw: bytes) -> str:
    """``json`` for a body that opens like JSON, else ``form`` (what the CLI's file says)."""
    return "json" if raw.lstrip()[:1] in (b"{", b"[") else "form"


def read_as_delivery(mapping: Any, fmt: str, raw: bytes) -> dict[str, Any]:
    """The payload a delivery in format `fmt` would carry, or BadPayload with the reason."""
    if fmt not in FORMATS:
        raise BadPayload(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    method, mimetype = FORMATS[fmt]
    if method != "GET":
        return read_delivery(mapping, method, mimetype, raw, "")
    try:
        query = raw.decode("utf-8").strip().lstrip("?")
    except UnicodeDecodeError:
        raise BadPayload("query string is not UTF-8") from None
    return read_delivery(mapping, method, mimetype, b"", query)


def try_payload(files: MappingFiles, platform: str, raw: bytes, fmt: str, region: str) -> TryResult:
    """Map `raw` (in format `fmt`) with `platform`'s file and preview HubSpot's requests."""
    mapping = files.platforms.get(platform)
    if mapping is None:
        known = ", ".join(sorted(files.platforms)) or "(none)"
        return TryResult(platform, error=f"no mapping for platform {platform!r} (known: {known})")
    try:
        payload = read_as_delivery(mapping, fmt, raw)
        result = map_payload(mapping, payload, default_region=region)
    except (BadPayload, MappingError) as exc:
        return TryResult(platform, error=str(exc))
    if result.ignored:
        return TryResult(platform, ignored=result.ignored)
    outcome = TryResult(platform, events=[e.to_json() for e in result.events])
    if files.hubspot is None:
        outcome.preview_error = "no hubspot.yaml in the mapping files"
        return outcome
    try:
        outcome.requests = preview_hubspot_request(result.events, files, region)
    except Exception as exc:  # a preview must explain itself, never crash the page
        outcome.preview_error = f"{type(exc).__name__}: {exc}"
    return outcome
