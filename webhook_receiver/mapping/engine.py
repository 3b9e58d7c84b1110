"""Turning one provider payload into canonical call events, as a mapping file says.

Unknown values are never guessed: a payload the file cannot read raises
``MappingError`` with a reason the platform's admin can act on. The receiver
keeps the payload as ``unmapped`` for replay and answers as the file's
``on_unmapped`` policy says (200, or 422 with the reason).

The engine trusts nothing in the payload: a value of the wrong shape (an object
where text is expected), out of range (a month-long call, a date in 2200) or too
long for its column is a MappingError naming the field, never an exception that
would answer 500 or a row the worker could never fold.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from webhook_receiver.mapping import expressions
from webhook_receiver.mapping.expressions import ExpressionError
from webhook_receiver.mapping.payloads import quote
from webhook_receiver.mapping.schema import EXPR, EventRule, FieldSpec, PlatformMapping
from webhook_receiver.mapping.transforms import convert
from worker.core.events import CallEvent

_MISSING = object()
# Fields that may read a list (the legs a leg names; a dedupe key is hashed as text): every
# other field takes one value.
_MANY_VALUED = {"linked_call_ids", "dedupe_key"}
# A value a field's `map` does not list, when the file says nothing (`unmapped:`): the
# delivery is unmapped, except for an outcome, which callhook infers from the call's times
# when none is stated. A platform adding a hangup cause must not stop call logging.
_UNMAPPED = {"outcome": "absent"}


class MappingError(ValueError):
    """The payload cannot be read by the platform's mapping; the message says why."""


@dataclass
class MapResult:
    dedupe_key: str
    events: list[CallEvent] = field(default_factory=list)
    ignored: str | None = None  # why a known payload produces nothing


@dataclass
class _Context:
    top: Any
    root: Any
    mapping: PlatformMapping
    region: str
    _variables: dict[str, Any] | None = field(default=None, repr=False)

    def at(self, root: Any) -> _Context:
        return _Context(self.top, root, self.mapping, self.region)

    @property
    def zone(self) -> str:
        return self.mapping.timezone

    def variables(self) -> dict[str, Any]:
        """What expressions and templates read: the root's keys, `this` and `delivery`.

        Built on first use and kept for the rest of this item, so a rule with no `expr`
        or `template` costs nothing, and one with several pays once. Values get the
        platform's clean-up (`strip_quotes`, `absent_values`) as paths' values do.
        """
        if self._variables is None:
            root = _clean_deep(self.root, self.mapping)
            top = root if self.top is self.root else _clean_deep(self.top, self.mapping)
            self._variables = expressions.scope(root, top)
        return self._variables


def get_path(data: Any, path: str) -> Any:
    """Read ``a.b.0.c`` from nested dicts and lists; ``_MISSING`` if any step is absent."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict):
            if part not in current:
                return _MISSING
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _lookup(ctx: _Context, path: str) -> Any:
    # `$.x` reads from the whole payload even inside `root:` or `foreach:`.
    value = get_path(ctx.top, path[2:]) if path.startswith("$.") else get_path(ctx.root, path)
    return _clean(value, ctx.mapping)


def _clean(value: Any, mapping: PlatformMapping) -> Any:
    """Apply the platform's `strip_quotes` and `absent_values` to a text value."""
    if not isinstance(value, str):
        return value
    if mapping.strip_quotes and len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if any(re.fullmatch(pattern, value) for pattern in mapping.absent_values):
        return _MISSING
    return value


def _clean_deep(value: Any, mapping: PlatformMapping) -> Any:
    """`_clean` applied throughout a payload (only copied when the platform cleans values)."""
    if not (mapping.strip_quotes or mapping.absent_values):
        return value
    if isinstance(value, dict):
        cleaned = {key: _clean_deep(item, mapping) for key, item in value.items()}
        return {key: item for key, item in cleaned.items() if item is not _MISSING}
    if isinstance(value, list):
        return [None if (c := _clean_deep(item, mapping)) is _MISSING else c for item in value]
    return _clean(value, mapping)


def _text(value: Any) -> str:
    """How a payload value compares with a YAML one: JSON `true` and form "true" are equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _present(value: Any) -> bool:
    return value is not _MISSING and value is not None and value != ""


def _matches(conditions: dict[str, Any], ctx: _Context) -> bool:
    for path, expected in conditions.items():
        if path == EXPR:
            try:
                if not expressions.expression(expected).evaluate(ctx.variables()):
                    return False
            except ExpressionError as exc:
                raise MappingError(f"when: {exc}") from None
            continue
        value = _lookup(ctx, path)
        if isinstance(expected, dict) and set(expected) == {"present"}:
            if _present(value) != bool(expected["present"]):
                return False
        elif isinstance(expected, dict) and set(expected) == {"regex"}:
            if not _present(value) or re.search(str(expected["regex"]), _text(value)) is None:
                return False
        elif isinstance(expected, list):
            if not _present(value) or _text(value).casefold() not in {
                _text(e).casefold() for e in expected
            }:
                return False
        elif not _present(value) or _text(value).casefold() != _text(expected).casefold():
            return False
    return True


def _source(spec: FieldSpec) -> str:
    """How a reason names where a field comes from: its paths, or its expression."""
    if spec.paths:
        return "/".join(spec.paths)
    if spec.expr is not None:
        return f"expr {spec.expr!r}"
    if spec.template is not None:
        return f"template {spec.template!r}"
    return "value"


def resolve(name: str, spec: FieldSpec, ctx: _Context) -> tuple[Any, Any]:
    """One field's (canonical value, raw value); (None, None) when absent and no default."""
    raw: Any = _MISSING
    if spec.value is not None:
        raw = spec.value
    elif spec.expr is not None:
        try:
            # What it read is already cleaned (`variables`); what it says is taken as is.
            raw = expressions.expression(spec.expr).evaluate(ctx.variables())
        except ExpressionError as exc:
            raise MappingError(f"{name}: {exc}") from None
    elif spec.template is not None:
        try:
            rendered = expressions.template(spec.template).render(ctx.variables())
        except ExpressionError as exc:
            raise MappingError(f"{name}: {exc}") from None
        raw = _MISSING if rendered is None else rendered
    else:
        for path in spec.paths:
            candidate = _lookup(ctx, path)
            if _present(candidate):
                raw = candidate
                break
    if raw is not _MISSING and spec.regex is not None:
        match = re.search(spec.regex, str(raw))
        raw = (match.group(1) if match.groups() else match.group(0)) if match else _MISSING
    if not _present(raw):
        return spec.default, None
    if isinstance(raw, dict | list) and name not in _MANY_VALUED:
        # An object where a value belongs: its repr must not become a call id or a number.
        # (A `regex` has already turned it into text, or into nothing when it did not match.)
        kind = "an object" if isinstance(raw, dict) else "a list"
        raise MappingError(f"{name}: {_source(spec)} is {kind}, not a value")
    value: Any = raw
    if spec.map is not None:
        key = str(raw)
        lowered = {str(k).casefold(): v for k, v in spec.map.items()}
        if key in spec.map:
            value = spec.map[key]
        elif key.casefold() in lowered:
            value = lowered[key.casefold()]
        elif spec.default is not None:
            return spec.default, raw
        elif (spec.unmapped or _UNMAPPED.get(name, "error")) == "absent":
            return None, raw
        else:
            known = ", ".join(sorted(str(k) for k in spec.map))
            raise MappingError(f"{name}: {_source(spec)} {quote(raw)} is not one of: {known}")
    if spec.type is not None and value is not None:
        try:
            value = convert(
                spec.type, value, region=spec.region or ctx.region, zone=ctx.zone, fmt=spec.format
            )
        except ValueError as exc:
            raise MappingError(f"{name}: {exc}") from None
    return value, raw


def _variables(rule: EventRule, ctx: _Context) -> dict[str, Any]:
    spec = rule.fields.variables
    if spec is None:
        return {}
    found: dict[str, Any] = {}
    for path in spec.paths:
        block = _lookup(ctx, path)
        if spec.json_text and isinstance(block, str):
            try:
                block = convert("json", block, region=ctx.region, zone=ctx.zone, fmt=None)
            except ValueError as exc:
                raise MappingError(f"variables: {path}: {exc}") from None
        if isinstance(block, dict):
            found.update(block)
    if spec.rest and isinstance(ctx.root, dict):
        used = {p.split(".")[0] for p in spec.paths}
        for name in type(rule.fields).model_fields:
            field_spec = getattr(rule.fields, name)
            if isinstance(field_spec, FieldSpec):
                used.update(p.split(".")[0] for p in field_spec.paths)
                if field_spec.template is not None:
                    used.update(expressions.template(field_spec.template).names)
                if field_spec.expr is not None:
                    used.update(expressions.expression(field_spec.expr).names)
        used.update(rule.when)
        if isinstance(rule.when.get(EXPR), str):
            used.update(expressions.expression(rule.when[EXPR]).names)
        for key, value in ctx.root.items():
            if key not in used and key not in spec.exclude:
                found[key] = value
    # Variables get the same clean-up as fields: no quoted text, no unfilled placeholder.
    cleaned = {key: _clean(value, ctx.mapping) for key, value in found.items()}
    return {key: value for key, value in cleaned.items() if _present(value)}


def _build(mapping: PlatformMapping, rule: EventRule, ctx: _Context) -> CallEvent | None:
    values: dict[str, Any] = {"platform": mapping.platform}
    for name in type(rule.fields).model_fields:
        spec = getattr(rule.fields, name)
        if not isinstance(spec, FieldSpec):
            continue
        value, raw = resolve(name, spec, ctx)
        if name == "external_number" and raw is not None:
            values["external_number_raw"] = str(raw)
        if name == "parent_call_id" and value is not None:
            value = str(value)
        if name == "linked_call_ids" and value is not None:
            value = [str(v) for v in value] if isinstance(value, list) else str(value).split(",")
            value = [v.strip() for v in value if v.strip()]
        if value is not None:
            values[name] = value
    for required in ("call_id", "stage"):
        if required not in values:
            spec = getattr(rule.fields, required)
            raise MappingError(f"{required}: {_source(spec)} is missing")
    if values["stage"] == "ignore":
        return None
    values["call_id"] = str(values["call_id"])
    values["variables"] = _variables(rule, ctx)
    try:
        return CallEvent.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        given = err["input"]
        # Text and numbers are named (cut short); a time's message already shows the time.
        shown = f" (got {quote(given)})" if isinstance(given, str | int | float) else ""
        raise MappingError(f"{where}: {err['msg']}{shown}") from None


def payload_digest(payload: Any) -> str:
    """A stable id for a payload that carries none: identical redeliveries collide."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def map_payload(mapping: PlatformMapping, payload: Any, *, default_region: str) -> MapResult:
    """Apply `mapping` to a parsed payload (each item of it, for a `split` platform)."""
    region = mapping.default_region or default_region
    top = _Context(top=payload, root=payload, mapping=mapping, region=region)
    key = payload_digest(payload)
    if mapping.dedupe_key is not None:
        custom, _ = resolve("dedupe_key", mapping.dedupe_key, top)
        if custom is not None:
            key = str(custom)[:200]
    if not isinstance(payload, dict):
        raise MappingError("payload is not an object")
    if mapping.split is None:
        events, ignored = _map_one(mapping, top)
        return MapResult(dedupe_key=key, events=events, ignored=ignored)
    items = _lookup(top, mapping.split)
    if not isinstance(items, list) or not items:
        raise MappingError(f"split: {mapping.split!r} is not a non-empty list")
    events, reasons = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MappingError(f"{mapping.split}[{index}]: not an object")
        try:
            found, ignored = _map_one(mapping, top.at(item))
        except MappingError as exc:
            # One unreadable item refuses the batch: nothing of it is half-processed,
            # and the whole delivery is kept for replay once the mapping is fixed.
            raise MappingError(f"{mapping.split}[{index}]: {exc}") from None
        events.extend(found)
        if ignored:
            reasons.append(f"{mapping.split}[{index}]: {ignored}")
    if not events:
        return MapResult(dedupe_key=key, ignored="; ".join(reasons))
    return MapResult(dedupe_key=key, events=events)


def _map_one(mapping: PlatformMapping, ctx: _Context) -> tuple[list[CallEvent], str | None]:
    """The events of one payload (or one item of a batch): (events, None) or ([], why ignored)."""
    for index, conditions in enumerate(mapping.ignore):
        if _matches(conditions, ctx):
            return [], f"ignore rule {index} matched"
    for index, rule in enumerate(mapping.events):
        if not _matches(rule.when, ctx):
            continue
        label = rule.name or f"events[{index}]"
        root = ctx.root if rule.root is None else _lookup(ctx, rule.root)
        if not isinstance(root, dict):
            raise MappingError(f"{label}: root {rule.root!r} is not an object")
        if rule.foreach is None:
            items = [root]
        else:
            items = _lookup(ctx.at(root), rule.foreach)
            if not isinstance(items, list) or not items:
                raise MappingError(f"{label}: foreach {rule.foreach!r} is not a non-empty list")
        events = []
        for item in items:
            try:
                built = _build(mapping, rule, ctx.at(item))
            except MappingError as exc:
                raise MappingError(f"{label}: {exc}") from None
            if built is not None:
                events.append(built)
        if not events:
            return [], f"{label}: stage is ignored"
        return events, None
    names = ", ".join(r.name or f"events[{i}]" for i, r in enumerate(mapping.events))
    raise MappingError(f"no event rule matches this payload{_seen(mapping, ctx)} (rules: {names})")


def _seen(mapping: PlatformMapping, ctx: _Context) -> str:
    """What the payload says in the fields the rules test, e.g. ` (event_type='parked')`."""
    paths = dict.fromkeys(
        p for r in mapping.events for p, c in r.when.items() if c != {"present": True} and p != EXPR
    )
    found = [f"{p}={quote(_lookup(ctx, p))}" for p in paths if _present(_lookup(ctx, p))]
    return f" ({', '.join(found)})" if found else ""
