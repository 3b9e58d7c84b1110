"""The format of a platform mapping file (``mappings/<platform>.yaml``).

A platform is added by writing one of these, not Python. Every key is checked
when the file is loaded: a typo is an error naming the key, never a field that
silently stays empty.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from webhook_receiver.mapping import expressions
from worker.core.events import Stage

Transform = Literal[
    "str",
    "json",
    "int",
    "bool",
    "phone",
    "epoch_s",
    "epoch_ms",
    "gregorian_s",
    "iso8601",
    "datetime",
    "seconds",
    "milliseconds",
    "minutes",
    "hms",
]
TRANSFORMS: tuple[str, ...] = get_args(Transform)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(Strict):
    """Where one canonical field comes from, and how its value is converted."""

    path: str | list[str] | None = None
    value: Any = None
    # Jinja: `{{ a.b }}-{{ c }}` (a file written before Jinja may still say `{a.b}-{c}`).
    template: str | None = None
    # A Jinja expression over the payload's keys: `phone_a if is_incoming else phone_b`.
    expr: str | None = None
    type: Transform | None = None
    regex: str | None = None
    map: dict[str, Any] | None = None
    default: Any = None
    region: str | None = None
    format: str | None = None
    # A value `map` does not list: the delivery is unmapped, or the field absent. Unset,
    # `outcome` is absent (callhook infers it) and every other field is unmapped.
    unmapped: Literal["error", "absent"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `call_id: callUuid` is short for `call_id: {path: callUuid}`.
        if isinstance(data, str):
            return {"path": data}
        if isinstance(data, list):
            return {"path": data}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        sources = [s for s in (self.path, self.template, self.expr) if s is not None]
        if self.value is not None:
            sources.append(self.value)
        if len(sources) > 1:
            raise ValueError("give only one of path, value, template, expr")
        if not sources and self.default is None:
            raise ValueError("needs a path, value, template, expr or default")
        return self

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, value: str | None) -> str | None:
        # Compiled here, once: a syntax error stops start-up naming the file and the key,
        # and the engine only ever runs compiled templates (expressions.template caches).
        if value is not None:
            if expressions.is_legacy_template(value):
                value = expressions.from_legacy(value)
            expressions.template(value)
        return value

    @field_validator("expr")
    @classmethod
    def _expr_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            expressions.expression(value)
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @property
    def paths(self) -> list[str]:
        if self.path is None:
            return []
        return [self.path] if isinstance(self.path, str) else list(self.path)


class VariablesSpec(Strict):
    """The platform's custom variables: a dict at `path`, and/or every unmapped top-level key."""

    path: str | list[str] | None = None  # one block, or several merged in order
    # The dict at `path` arrives as a JSON string (Voximplant Kit's `call_data`).
    json_text: bool = False
    rest: bool = False
    exclude: list[str] = Field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        if self.path is None:
            return []
        return [self.path] if isinstance(self.path, str) else list(self.path)


class Fields(Strict):
    """Canonical field → where it comes from. `call_id` and `stage` are required."""

    call_id: FieldSpec
    stage: FieldSpec
    # The call this leg belongs to (KAZOO's B leg → its A leg, a Kwebbl bridged leg → the
    # caller's leg): its events fold into that call, so legs make one logical call.
    parent_call_id: FieldSpec | None = None
    linked_call_ids: FieldSpec | None = None
    direction: FieldSpec | None = None
    external_number: FieldSpec | None = None
    company_number: FieldSpec | None = None
    agent: FieldSpec | None = None
    occurred_at: FieldSpec | None = None
    started_at: FieldSpec | None = None
    answered_at: FieldSpec | None = None
    ended_at: FieldSpec | None = None
    duration_s: FieldSpec | None = None
    talk_s: FieldSpec | None = None
    outcome: FieldSpec | None = None
    recording_url: FieldSpec | None = None
    hangup_cause: FieldSpec | None = None
    variables: VariablesSpec | None = None

    @field_validator("stage")
    @classmethod
    def _stages_known(cls, spec: FieldSpec) -> FieldSpec:
        allowed = {s.value for s in Stage} | {"ignore"}
        targets = list((spec.map or {}).values())
        if spec.value is not None:
            targets.append(spec.value)
        if spec.default is not None:
            targets.append(spec.default)
        for target in targets:
            if target not in allowed:
                raise ValueError(f"{target!r} is not a stage; use one of {sorted(allowed)}")
        return spec


Condition = Any  # scalar (equals), list (one of), {present: bool} or {regex: "…"}
# In a `when` (or an `ignore` entry), this key is not a path but a Jinja condition.
EXPR = "expr"


def check_conditions(conditions: dict[str, Condition]) -> dict[str, Condition]:
    """Compile a condition set's `expr` (a syntax error is the file's error, at load)."""
    if EXPR in conditions:
        source = conditions[EXPR]
        if not isinstance(source, str):
            raise ValueError(f"expr: write the condition as text, not {type(source).__name__}")
        try:
            expressions.expression(source)
        except ValueError as exc:
            raise ValueError(f"expr: {exc}") from None
    for path, expected in conditions.items():
        if isinstance(expected, dict) and set(expected) == {"regex"}:
            try:
                re.compile(str(expected["regex"]))
            except re.error as exc:
                raise ValueError(f"{path}: not a valid regular expression: {exc}") from None
    return conditions


class EventRule(Strict):
    """Payloads matching `when` become canonical events built from `fields`."""

    name: str | None = None
    when: dict[str, Condition] = Field(default_factory=dict)
    root: str | None = None
    foreach: str | None = None
    fields: Fields

    @field_validator("when")
    @classmethod
    def _when(cls, value: dict[str, Condition]) -> dict[str, Condition]:
        return check_conditions(value)


class Auth(Strict):
    """How the platform proves a delivery is genuine; secrets are named by env var.

    `header` (optionally with a `scheme` such as Bearer), `query` (a `param`), or
    `signature`: an HMAC of the raw body (and, where the platform signs them, an id and
    a timestamp checked within `tolerance_s`), as Standard Webhooks and most signing
    platforms do.
    """

    location: Literal["header", "query", "signature", "none"]
    header: str | None = None
    scheme: str | None = None
    param: str | None = None
    secret_env: str | list[str] | None = None
    # -- signature --
    # What is signed; placeholders {id}, {timestamp}, {body} (the raw bytes as received).
    signed: str = "{body}"
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    # Stripped from each signature in the header ("sha256=", Standard Webhooks' "v1,").
    prefix: str = ""
    # Standard Webhooks secrets are base64 after a "whsec_" prefix.
    secret_encoding: Literal["raw", "base64"] = "raw"
    timestamp_header: str | None = None
    id_header: str | None = None
    tolerance_s: int = Field(default=300, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        if self.location in ("header", "signature") and not self.header:
            raise ValueError(f"location {self.location} needs `header` (e.g. Authorization)")
        if "{timestamp}" in self.signed and not self.timestamp_header:
            raise ValueError("`signed` uses {timestamp}: name its `timestamp_header`")
        if "{id}" in self.signed and not self.id_header:
            raise ValueError("`signed` uses {id}: name its `id_header`")
        if self.location == "query" and not self.param:
            raise ValueError("location query needs `param` (e.g. token)")
        if self.location != "none" and not self.secret_env:
            raise ValueError("needs `secret_env`: the environment variable holding the secret")
        return self

    @property
    def secret_envs(self) -> list[str]:
        if self.secret_env is None:
            return []
        return [self.secret_env] if isinstance(self.secret_env, str) else list(self.secret_env)


BodyFormat = Literal["json", "form", "query"]


def _json_only() -> list[BodyFormat]:
    return ["json"]


class PlatformMapping(Strict):
    """One telephony platform: its auth, the bodies it sends, and how to read them."""

    kind: Literal["platform"]
    platform: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    name: str | None = None
    source: str | None = None
    auth: Auth
    accept: list[BodyFormat] = Field(default_factory=_json_only)
    # Read a body of an unexpected Content-Type (text/plain…) as JSON: for platforms whose
    # admins write the body themselves and whose sending header is not documented (UIS).
    any_content_type_is_json: bool = False
    timezone: str = "UTC"
    default_region: str | None = None
    dedupe_key: FieldSpec | None = None
    # A batch: the list at this path holds several payloads, each mapped on its own
    # (Voximplant Kit posts `{"callbacks": [...]}`); `$.` still reads the whole body.
    split: str | None = None
    # Values read as absent: platforms whose admins write the body as a template send an
    # unfilled placeholder (UIS: "{{extension_phone_number}}") or the text "null".
    absent_values: list[str] = Field(default_factory=list)
    # Strip one pair of quotes around text values (UIS templates quote values in GET/form).
    strip_quotes: bool = False
    ignore: list[dict[str, Condition]] = Field(default_factory=list)
    events: list[EventRule] = Field(min_length=1)
    # What to answer an authenticated delivery the mapping cannot read (no rule matches,
    # or a field is missing, unknown to its `map`, or out of range). It is kept as
    # `unmapped` either way, for `callhook events replay`. `accept` answers 200
    # {"status": "unmapped"}: a platform that counts non-2xx answers towards disabling the
    # hook (KAZOO: 6 in 60 s) or retries them goes on delivering every other call.
    # `refuse` answers 422 with the reason, for a platform that shows it to its admin.
    # See "When the mapping cannot read a delivery" in docs/mappings.md.
    on_unmapped: Literal["accept", "refuse"] = "accept"

    @model_validator(mode="before")
    @classmethod
    def _drop_extension_keys(cls, data: Any) -> Any:
        # `x-…` top-level keys hold YAML anchors shared by rules (as in docker-compose).
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not str(k).startswith("x-")}
        return data

    @field_validator("ignore")
    @classmethod
    def _ignore(cls, value: list[dict[str, Condition]]) -> list[dict[str, Condition]]:
        return [check_conditions(conditions) for conditions in value]

    @field_validator("absent_values")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return values

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None
        return value
