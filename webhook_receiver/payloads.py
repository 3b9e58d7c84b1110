"""Reading request bodies: JSON, form-encoded (with ``a[b][c]`` nesting) and query strings.

KAZOO posts form-encoded bodies by default with nested keys; some platforms call
a GET URL with the payload in the query string. All become the same nested dict
for the mapping engine.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

JSON_TYPES = ("application/json", "text/json")
FORM_TYPE = "application/x-www-form-urlencoded"
_KEY_PART = re.compile(r"\[([^\[\]]*)\]")


class BadPayload(ValueError):
    """The body cannot be parsed; the message is the 400's reason."""


def body_format(mimetype: str) -> str | None:
    """``json`` / ``form`` for the media types callhook reads, else None (415)."""
    if mimetype in JSON_TYPES or mimetype.endswith("+json"):
        return "json"
    if mimetype == FORM_TYPE:
        return "form"
    return None


def parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadPayload("body is not UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadPayload(f"body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise BadPayload("JSON body must be an object")
    return data


def nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest bracketed keys.

    ``call[from]=1&call[to]=2&tags[]=a`` → ``{"call": {"from": "1", "to": "2"}, "tags": ["a"]}``.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])] if "[" in key else [key]
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `tags[]`: append to a list
                if not isinstance(node, list):
                    raise BadPayload(f"form key {key!r} mixes list and object forms")
                if last:
                    node.append(value)
                    break
                node.append({})
                node = node[-1]
                continue
            if not isinstance(node, dict):
                raise BadPayload(f"form key {key!r} mixes list and object forms")
            if last:
                node[part] = value
            else:
                child_is_list = parts[i + 1] == ""
                node = node.setdefault(part, [] if child_is_list else {})
    return out


def parse_form(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("body is not UTF-8") from None
    return nest(parse_qsl(text, keep_blank_values=True))


def strip_param(query: str, param: str | None) -> str:
    """The query string without the auth parameter, safe to store."""
    if not param:
        return query
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != param]
    return urlencode(kept)
