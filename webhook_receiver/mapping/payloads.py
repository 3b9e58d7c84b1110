"""Reading request bodies: JSON, form-encoded (with ``a[b][c]`` nesting) and query strings.

KAZOO posts form-encoded bodies by default with nested keys; some platforms call
a GET URL with the payload in the query string. All become the same nested dict
for the mapping engine.

Everything read here is bounded, because everything after it (the digest that
dedupes a delivery, the mapping engine, the JSON columns) walks the payload:
at most ``MAX_DEPTH`` levels of nesting, ``MAX_FIELDS`` form or query fields,
integers of at most ``MAX_INT_DIGITS`` digits and only finite numbers. A body
past a bound is refused with a ``BadPayload`` naming the bound, never a 500.
The bounds sit far above what any platform sends: the fixtures of tests/platforms
nest at most 7 levels (Voximplant's `new_calls`) and their longest integer has 16
digits (a KAZOO notification).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

JSON_TYPES = ("application/json", "text/json")
FORM_TYPE = "application/x-www-form-urlencoded"
_KEY_PART = re.compile(r"\[([^\[\]]*)\]")

# Levels of objects and lists, the outermost one counting as 1.
MAX_DEPTH = 32
# Form fields in a body, or fields in a query string.
MAX_FIELDS = 1000
# Digits of a JSON integer: room for any 64-bit id with a wide margin, far below the
# 4,300 digits where Python's int() itself refuses.
MAX_INT_DIGITS = 30
# How much of a value a refusal quotes: enough to recognise it, never the whole body.
QUOTE_CHARS = 60


class BadPayload(ValueError):
    """The body cannot be read; the message is the refusal's reason.

    `status` is the HTTP status the receiver answers: 400 for a body it cannot parse,
    415 for a format the platform's mapping does not accept.
    """

    status = 400


class UnsupportedFormat(BadPayload):
    """The body's format is not one the platform's mapping accepts (415)."""

    status = 415


def quote(value: object) -> str:
    """`repr(value)`, cut to QUOTE_CHARS: a refusal names a value without echoing a body."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def body_format(mimetype: str) -> str | None:
    """``json`` / ``form`` for the media types callhook reads, else None (415)."""
    if mimetype in JSON_TYPES or mimetype.endswith("+json"):
        return "json"
    if mimetype == FORM_TYPE:
        return "form"
    return None


def payload_format(
    platform: str, method: str, mimetype: str, accept: Sequence[str], any_type_is_json: bool
) -> str:
    """How to read a delivery to `platform`: ``json``, ``form`` or ``query``.

    Raises UnsupportedFormat with the reason when the mapping does not accept it.
    """
    fmt = "query" if method == "GET" else body_format(mimetype)
    if fmt is None and any_type_is_json:
        fmt = "json"
    if fmt is None:
        shown = quote(mimetype) if mimetype else "'(none)'"
        raise UnsupportedFormat(f"content type {shown} is not JSON or form-encoded")
    if fmt not in accept:
        raise UnsupportedFormat(f"{platform} accepts {', '.join(accept)}, not {fmt}")
    return fmt


def read_payload(fmt: str, raw: bytes, query_pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The nested dict a delivery carries, in the format `payload_format` chose."""
    if fmt == "json":
        return parse_json(raw)
    if fmt == "form":
        return parse_form(raw)
    return nest(query_pairs)


class AcceptedFormats(Protocol):
    """What `read_delivery` needs of a platform's mapping (``mapping.schema.PlatformMapping``:
    a protocol, since the mapping package imports this module)."""

    @property
    def platform(self) -> str: ...
    @property
    def accept(self) -> Sequence[str]: ...
    @property
    def any_content_type_is_json(self) -> bool: ...


def read_delivery(
    mapping: AcceptedFormats, method: str, mimetype: str, body: bytes, query: str
) -> dict[str, Any]:
    """The payload of a delivery to `mapping`'s platform, read as the receiver reads one.

    One place for the format dispatch that a stored delivery's replay and the mapping
    sandbox share with the webhook route (which needs `payload_format` and `read_payload`
    apart, between its checks): `query` is the query string as stored (its secret already
    removed). Raises BadPayload (UnsupportedFormat for a format the mapping refuses).
    """
    fmt = payload_format(
        mapping.platform, method, mimetype, mapping.accept, mapping.any_content_type_is_json
    )
    return read_payload(fmt, body, query_pairs(query))


def _refuse_constant(name: str) -> Any:
    raise BadPayload(f"body is not valid JSON: {name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadPayload(f"a number in the body has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadPayload(f"the number {quote(text)} in the body is too large")
    return value


def loads(text: str) -> Any:
    """`json.loads`, bounded: finite numbers of sane size, at most MAX_DEPTH levels.

    Python's own decoder accepts NaN and Infinity (not JSON), turns 1e400 into
    infinity, and raises RecursionError or a bare ValueError on deep nesting or
    huge integers; each of these becomes a BadPayload with the reason.
    """
    try:
        data = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise BadPayload(f"body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise BadPayload(f"body is nested more than {MAX_DEPTH} levels deep") from None
    check_bounds(data)
    return data


def check_bounds(value: Any) -> None:
    """Refuse a parsed payload past the bounds, whoever parsed it (a listener too).

    Iterative, so that checking a deep payload cannot itself overflow the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise BadPayload(f"body is nested more than {MAX_DEPTH} levels deep")
            children: Iterable[Any] = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(node, float) and not math.isfinite(node):
            raise BadPayload("a number in the body is not finite")
        elif isinstance(node, int) and abs(node) >= 10**MAX_INT_DIGITS:
            raise BadPayload(f"a number in the body has more than {MAX_INT_DIGITS} digits")


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadPayload("body is not UTF-8") from None
    data = loads(text)
    if not isinstance(data, dict):
        raise BadPayload("JSON body must be an object")
    return data


def nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest bracketed keys.

    ``call[from]=1&call[to]=2&tags[]=a`` → ``{"call": {"from": "1", "to": "2"}, "tags": ["a"]}``.
    """
    if len(pairs) > MAX_FIELDS:
        raise BadPayload(f"more than {MAX_FIELDS} fields")
    out: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])] if "[" in key else [key]
        if len(parts) > MAX_DEPTH:
            raise BadPayload(f"form key {quote(key)} is nested more than {MAX_DEPTH} levels deep")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `tags[]`: append to a list
                if not isinstance(node, list):
                    raise BadPayload(f"form key {quote(key)} mixes list and object forms")
                if last:
                    node.append(value)
                    break
                node.append({})
                node = node[-1]
                continue
            if not isinstance(node, dict):
                raise BadPayload(f"form key {quote(key)} mixes list and object forms")
            if last:
                node[part] = value
            else:
                child_is_list = parts[i + 1] == ""
                node = node.setdefault(part, [] if child_is_list else {})
    return out


def query_pairs(text: str) -> list[tuple[str, str]]:
    """The fields of a form body or query string, at most MAX_FIELDS of them."""
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:  # the only ValueError parse_qsl raises here: too many fields
        raise BadPayload(f"more than {MAX_FIELDS} fields") from None


def parse_form(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("body is not UTF-8") from None
    if "\x00" in text:  # form encoding writes it %00; a raw one is a broken body
        raise BadPayload("body contains a NUL byte")
    return nest(query_pairs(text))


def without_param(pairs: list[tuple[str, str]], param: str | None) -> list[tuple[str, str]]:
    """The fields without the one carrying the secret: what is stored and mapped."""
    return [(k, v) for k, v in pairs if k != param] if param else pairs


def encode_query(pairs: list[tuple[str, str]]) -> str:
    """The query string to store (its secret already removed), read back by `query_pairs`."""
    return urlencode(pairs)
