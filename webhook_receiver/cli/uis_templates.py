"""Checking a UIS notification template before it is pasted (``callhook uis check-template``).

A UIS notification body is a template the admin writes, with ``{{variable}}`` placeholders
(docs/platforms/uis.md, "Templates"). UIS inserts each value already JSON-encoded: text in
quotes, numbers bare, lists as arrays, empty values as ``null``; a placeholder it cannot
fill stays as it is. So the check fills the template the same way, with sample values in
the formats UIS uses (tests/platforms/uis/fixtures, SOURCES.md), parses the result as the
receiver would, maps it with ``mappings/uis.yaml``, and says what is wrong, where: invalid
JSON, a placeholder in quotes, an unknown variable, a missing or unknown ``event`` key, a
missing ``call_session_id``; or, when all is well, which canonical event it makes.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from webhook_receiver.mapping import MappingError, PlatformMapping, map_payload
from webhook_receiver.mapping.schema import FieldSpec

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")

# One call, in the formats UIS sends (the fixtures' values; SOURCES.md says where each
# format comes from). Values for the variables no published template uses are guesses of
# the type only: they are never read by the mapping.
SAMPLE_VALUES: dict[str, Any] = {
    "notification_name": "Начало разговора",
    "notification_mnemonic": None,  # its values are not published
    "notification_time": "2024-03-01 10:00:07.902",
    "notification_timestamp": 1709276407,
    "start_time": "2024-03-01 10:00:00",
    "virtual_phone_number": "74951234567",
    "contact_phone_number": "79261234567",
    "communication_number": 1,
    "communication_id": 88112233,
    "communication_type": "call",
    "contact_id": 7001,
    "contact_full_name": "Петров Иван",
    "contact_group_ids": [3],
    "call_session_id": 237859081,
    "external_id": None,
    "employee_full_name": "Иванова Анна",
    "employee_id": 25,
    "employee_ids": [25, 31],
    "employee_phone_number": "79161234567",
    "extension_phone_number": "101",
    "last_talked_employee_id": 25,
    "call_source": "va",
    "direction": "in",
    "scenario_name": "Основной",
    "scenario_id": 4401,
    "talk_time_duration": 42,
    "total_time_duration": 50,
    "wait_time_duration": 8,
    "tag_names": ["VIP"],
    "tag_ids": [12],
    "leg_id": 1061234501,
    "leg_ids": [1061234500, 1061234501],
    "file_link": "https://app.uiscom.ru/system/media/talk/237859081/9f6b2c1e0d8a4e3b/",
    "file_duration": 42,
    "is_transfer": False,
    "calling_phone_number": "79261234567",
    "called_phone_number": "74951234567",
    "call_status": None,
    "app_id": 1234,
    "cpn_region_id": 77,
    "cpn_region_name": "Москва",
    "is_internal": False,
    "visitor_country": "Россия",
    "tp_project": None,
    "attributes": None,
}

_COMMON = (
    "notification_name",
    "notification_mnemonic",
    "virtual_phone_number",
    "notification_time",
    "contact_phone_number",
    "call_session_id",
)
# The variables each event is documented to provide: the Planfix templates (integrators'
# published notes, "Per-event variable sets"), as docs/platforms/uis.md gives them.
EVENT_VARIABLES: dict[str, frozenset[str]] = {
    event: frozenset(_COMMON + extra)
    for event, extra in {
        "incoming_call": (
            "scenario_name",
            "communication_number",
            "contact_id",
            "contact_full_name",
        ),
        "waiting_for_answer": (
            "external_id",
            "contact_id",
            "employee_full_name",
            "employee_id",
            "call_source",
            "direction",
            "leg_id",
        ),
        "talk_started": (
            "external_id",
            "contact_id",
            "employee_full_name",
            "employee_id",
            "call_source",
            "direction",
            "leg_ids",
        ),
        "talk_finished": (
            "external_id",
            "communication_number",
            "employee_full_name",
            "employee_id",
            "call_source",
            "direction",
            "scenario_name",
            "talk_time_duration",
            "leg_ids",
        ),
        "call_finished": (
            "start_time",
            "external_id",
            "communication_number",
            "employee_full_name",
            "employee_id",
            "last_talked_employee_id",
            "call_source",
            "direction",
            "scenario_name",
            "talk_time_duration",
            "total_time_duration",
            "wait_time_duration",
            "tag_names",
        ),
        "lost_call": (
            "scenario_name",
            "wait_time_duration",
            "employee_ids",
            "communication_number",
            "contact_id",
            "contact_full_name",
        ),
        "outbound_call": (
            "contact_id",
            "contact_full_name",
            "employee_full_name",
            "employee_id",
            "employee_phone_number",
        ),
        "recording_ready": (
            "scenario_name",
            "communication_number",
            "contact_id",
            "contact_full_name",
            "employee_full_name",
            "employee_id",
            "file_link",
            "file_duration",
            "tag_ids",
            "tag_names",
        ),
    }.items()
}


@dataclass(frozen=True)
class Placeholder:
    name: str
    start: int  # offset in the template
    end: int
    line: int
    column: int
    in_string: bool  # written inside a JSON string ("{{x}}", "tel:{{x}}")


@dataclass
class TemplateReport:
    """What the check found. ``problems`` make UIS's deliveries fail; ``notes`` may not."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    event: str | None = None
    ignored: str | None = None
    canonical: list[dict[str, Any]] = field(default_factory=list)
    filled: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line on what callhook makes of a delivery, when the template is fine."""
        if self.ignored:
            return f"{self.event}: known and ignored by callhook (answered 200, no call)"
        parts = []
        for event in self.canonical:
            details = [event["stage"]]
            details += [event[k] for k in ("direction",) if event.get(k)]
            details.append(f"call {event['call_id']}")
            if event.get("agent"):
                details.append(f"agent {event['agent']}")
            parts.append(", ".join(str(d) for d in details))
        return f"{self.event or 'no event key'} → " + "; ".join(parts)


def check_template(text: str, mapping: PlatformMapping) -> list[str]:
    """The problems of a pasted UIS JSON template; an empty list when UIS's body will map."""
    return inspect_template(text, mapping).problems


def inspect_template(
    text: str, mapping: PlatformMapping, *, default_region: str = "RU"
) -> TemplateReport:
    report = TemplateReport()
    template = _strip_fence(text)
    if not template.strip():
        report.problems.append("the template is empty")
        return report
    if not template.lstrip().startswith("{"):
        report.problems.append(
            "not a JSON template: it must start with '{' (docs/platforms/uis.md, "
            '"Templates"); GET and form templates are not checked'
        )
        return report
    placeholders = find_placeholders(template)
    names = {p.name for p in placeholders}

    for p in placeholders:
        if p.name not in SAMPLE_VALUES:
            guess = difflib.get_close_matches(p.name, SAMPLE_VALUES, n=1)
            hint = f" (did you mean {{{{{guess[0]}}}}}?)" if guess else ""
            report.problems.append(
                f"line {p.line}: {{{{{p.name}}}}} is not a UIS variable{hint}. UIS leaves a "
                "placeholder it cannot fill as it is, and the body is then not JSON."
            )
    for p in placeholders:
        if p.in_string:
            example = json.dumps(SAMPLE_VALUES.get(p.name, "text"), ensure_ascii=False)
            report.problems.append(
                f"line {p.line}, column {p.column}: {{{{{p.name}}}}} is inside quotes. UIS "
                f"inserts values already JSON-encoded, so text arrives double-quoted "
                f'("{example}") and the body is not valid JSON: remove the quotes around it.'
            )
    if "call_session_id" not in names:
        report.problems.append(
            '"call_session_id": {{call_session_id}} is missing: it is the call\'s id, which '
            "ties the notifications of one call together (no call can be logged without it)."
        )

    filled, segments = fill(template, placeholders)
    report.filled = filled
    repeated: list[str] = []

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                repeated.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        payload = json.loads(filled, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        _, inside = _locate(exc.pos, segments)
        if inside is None or not inside.in_string:
            report.problems.append(_json_problem(exc, template, segments))
            return report
        # Explained by the quoted placeholder, reported above: look past it, with the
        # quoted values filled in as the admin meant them, for the next problem.
        filled, segments = fill(template, placeholders, as_meant=True)
        try:
            payload = json.loads(filled, object_pairs_hook=no_repeats)
        except json.JSONDecodeError as exc:
            report.problems.append(_json_problem(exc, template, segments))
            return report
    for key in dict.fromkeys(repeated):
        report.problems.append(f'the key "{key}" appears more than once: only the last one counts')
    if not isinstance(payload, dict):
        report.problems.append("the body must be a JSON object ({ ... })")
        return report

    if not _check_event(report, payload, template, placeholders, mapping):
        return report  # the mapping would only repeat it ("no event rule matches")
    if report.event in EVENT_VARIABLES:
        provided = EVENT_VARIABLES[report.event]
        for name in sorted(names - provided):
            if name in SAMPLE_VALUES:
                report.notes.append(
                    f"{{{{{name}}}}} is not among the variables documented for "
                    f"{report.event}: if UIS does not provide it there, it arrives as the "
                    "text {{" + name + "}} and the body is not JSON. Send a test notification."
                )

    try:
        result = map_payload(mapping, payload, default_region=default_region)
    except MappingError as exc:
        if not ("call_session_id" not in names and "call_session_id is missing" in str(exc)):
            report.problems.append(f"callhook's mapping (mappings/uis.yaml) refuses it: {exc}")
        return report
    if result.ignored:
        report.ignored = result.ignored
        return report
    report.canonical = [e.to_json() for e in result.events]
    if report.ok:
        _note_unread_fields(report, payload, mapping)
    return report


# -- pieces ------------------------------------------------------------------------------------
def _strip_fence(text: str) -> str:
    """A template copied from the docs with its ```json fence still around it."""
    lines = text.strip("\ufeff").splitlines()
    if lines and lines[0].strip().startswith("```"):
        lines = lines[1:]
        if lines and lines[-1].strip() == "```":
            lines = lines[:-1]
    return "\n".join(lines)


def find_placeholders(template: str) -> list[Placeholder]:
    """Every ``{{name}}``, and whether it sits inside a JSON string literal."""
    found: list[Placeholder] = []
    in_string = escaped = False
    line, line_start, i = 1, 0, 0
    while i < len(template):
        match = PLACEHOLDER.match(template, i)
        if match is not None:
            found.append(
                Placeholder(match.group(1), i, match.end(), line, i - line_start + 1, in_string)
            )
            i = match.end()
            continue
        char = template[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        if char == "\n":
            line, line_start = line + 1, i + 1
        i += 1
    return found


# (offset in the filled text, offset in the template, placeholder or None for literal text)
Segment = tuple[int, int, Placeholder | None]


def fill(
    template: str, placeholders: list[Placeholder], *, as_meant: bool = False
) -> tuple[str, list[Segment]]:
    """The body UIS would send: each placeholder replaced by its sample, JSON-encoded.

    An unknown variable becomes ``null`` here (UIS would leave it as it is, which is
    reported separately), so that the rest of the template can still be checked. With
    `as_meant`, a placeholder inside quotes gets its value as plain text, as its author
    expected, so that the check can go on past that (reported) mistake.
    """
    out: list[str] = []
    segments: list[Segment] = []
    position = filled = 0
    for p in placeholders:
        literal = template[position : p.start]
        segments.append((filled, position, None))
        out.append(literal)
        filled += len(literal)
        value = json.dumps(SAMPLE_VALUES.get(p.name), ensure_ascii=False)
        if as_meant and p.in_string:
            sample = SAMPLE_VALUES.get(p.name)
            value = json.dumps(sample if isinstance(sample, str) else value)[1:-1]
        segments.append((filled, p.start, p))
        out.append(value)
        filled += len(value)
        position = p.end
    segments.append((filled, position, None))
    out.append(template[position:])
    return "".join(out), segments


def _locate(position: int, segments: list[Segment]) -> tuple[int, Placeholder | None]:
    """A position in the filled body → (offset in the template, the placeholder it is in)."""
    where, inside = 0, None
    for filled_at, template_at, placeholder in segments:
        if filled_at > position:
            break
        where, inside = (
            (template_at, placeholder)
            if placeholder is not None
            else (template_at + position - filled_at, None)
        )
    return where, inside


def _json_problem(exc: json.JSONDecodeError, template: str, segments: list[Segment]) -> str:
    """The decode error, located in the template the admin wrote (not the filled body)."""
    where, inside = _locate(exc.pos, segments)
    line = template.count("\n", 0, where) + 1
    column = where - (template.rfind("\n", 0, where) + 1) + 1
    source = template.splitlines()[line - 1] if template.splitlines() else ""
    pointer = " " * (column - 1) + "^"
    value = f" (in the value of {{{{{inside.name}}}}})" if inside is not None else ""
    return (
        f"not valid JSON once UIS fills in the values: {exc.msg} at line {line}, column "
        f"{column}{value}:\n    {source}\n    {pointer}"
    )


def known_events(mapping: PlatformMapping) -> tuple[list[str], list[str]]:
    """(event keys the mapping reads, event keys it ignores), from its `event` conditions."""

    def values(condition: Any) -> list[str]:
        if isinstance(condition, str):
            return [condition]
        if isinstance(condition, list):
            return [c for c in condition if isinstance(c, str)]
        return []

    read = [v for rule in mapping.events for v in values(rule.when.get("event"))]
    ignored = [v for rule in mapping.ignore for v in values(rule.get("event"))]
    return list(dict.fromkeys(read)), list(dict.fromkeys(ignored))


def _check_event(
    report: TemplateReport,
    payload: dict[str, Any],
    template: str,
    placeholders: list[Placeholder],
    mapping: PlatformMapping,
) -> bool:
    """Check the `event` constant; False when a problem makes mapping pointless."""
    read, ignored = known_events(mapping)
    key = re.compile(r'"event"\s*:\s*$')
    for p in placeholders:
        if key.search(template[: p.start]):
            report.problems.append(
                f'line {p.line}: "event" must be a constant such as "talk_started", not '
                f"{{{{{p.name}}}}}: callhook keys on it (docs/platforms/uis.md)."
            )
            return False
    if "event" not in payload:
        try:
            result = map_payload(mapping, payload, default_region="RU")
        except MappingError:
            report.problems.append(
                'no "event" key: add "event": "<key>" with the key of the notification\'s '
                f"event ({', '.join(read)}); without it callhook cannot tell which UIS "
                "event sent the body (it would be kept as unmapped)."
            )
            return False
        if result.events and result.events[0].stage == "cdr":
            report.event = "call_finished"
            report.notes.append(
                'no "event" key: read as call_finished (the Planfix template, recognised by '
                'total_time_duration). Adding "event": "call_finished" makes it explicit.'
            )
        return True
    event = payload["event"]
    if not isinstance(event, str) or event not in (*read, *ignored):
        guess = difflib.get_close_matches(str(event), read, n=1)
        hint = f' (did you mean "{guess[0]}"?)' if guess else ""
        report.problems.append(
            f'"event": {json.dumps(event, ensure_ascii=False)} is not an event callhook '
            f"knows{hint}. Use one of: {', '.join(read)}."
        )
        return False
    report.event = event
    return True


def _note_unread_fields(
    report: TemplateReport, payload: dict[str, Any], mapping: PlatformMapping
) -> None:
    """What the event's rule reads and the template does not give (no agent, no number…)."""
    rule = next(
        (r for r in mapping.events if r.when.get("event") == report.event),
        None,
    )
    if rule is None:
        return
    for name, spec in rule.fields:
        if name in ("call_id", "stage") or not isinstance(spec, FieldSpec) or not spec.paths:
            continue
        tops = [path.split(".")[0] for path in spec.paths]
        if not any(top in payload for top in tops):
            report.notes.append(
                f"the event will carry no {name}: the template has none of {', '.join(tops)}"
            )
