"""Log lines that a request cannot forge, as text or as JSON (``LOG_FORMAT``).

Log messages carry request-derived text (a platform name from the URL, a reason quoting a
payload value, an agent's email). A ``%0A`` in ``/webhooks/<name>`` would otherwise start
a new, forged log line, and terminal escapes could rewrite an operator's screen. Escaping
is done once, in the formatter every process uses, so no call site can forget it: control
characters (C0, DEL, C1) and Unicode line separators become visible ``\\xNN``/``\\uNNNN``
escapes, and every record stays one line. Tracebacks, appended after the message by
``logging.Formatter.format``, keep their own line breaks.

``LOG_FORMAT=json`` writes one JSON object per line instead, for log platforms that index
fields. Its keys are stable: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the
stable key callhook's messages start with, such as ``webhook.accepted``; null for other
libraries' lines), ``message``, ``fields`` and, with a traceback, ``exc_info``. ``fields``
holds the message's ``key=value`` pairs, read from the *format string* and its arguments
(``"webhook.accepted platform=%s id=%s"``): a value quoting a request cannot add or change
a field, however it is spelled. JSON escapes control characters itself; DEL, C1 and the
Unicode line separators, which it may leave raw, are escaped too, so a record is still
one line whatever it quotes (the traceback included).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
# What json.dumps(ensure_ascii=False) leaves raw that a terminal or a line splitter heeds:
# outside strings JSON is plain ASCII, so these can only be inside strings, as escapes.
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), 0x2028, 0x2029)}

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
HANDLER_NAME = "callhook"

# A stable key: dotted lowercase words (`webhook.accepted`, `crm.sync`).
_EVENT = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")
# One printf conversion in a format string, and the `key=` right before it, if any.
_CONVERSION = re.compile(
    r"(?:(?<![\w.])([a-z_][a-z0-9_]*)=)?%(?:\([^)]*\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?"
    r"[diouxXeEfFgGcrsa%]"
)
# gunicorn's access-log atoms (gunicorn_conf.access_log_format) that become fields.
_ACCESS_ATOMS = {
    "h": "remote",
    "m": "method",
    "U": "path",
    "H": "protocol",
    "s": "status",
    "B": "bytes",
    "L": "duration_s",
    "a": "user_agent",
}


def escape(text: str) -> str:
    """`text` on one line, its control characters shown as escapes."""
    return text.translate(_ESCAPES)


class OneLineFormatter(logging.Formatter):
    """A `logging.Formatter` whose message part is always one escaped line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def message_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``key=%s`` pairs of a record's format string, with their arguments' values."""
    if not isinstance(record.msg, str) or not isinstance(record.args, tuple):
        return {}
    fields: dict[str, Any] = {}
    position = 0
    for match in _CONVERSION.finditer(record.msg):
        if match.group(0).endswith("%%"):
            continue
        # `*` widths take an argument each: give up rather than misalign.
        if "*" in match.group(0) or position >= len(record.args):
            return fields
        key = match.group(1)
        if key is not None and key not in fields:
            fields[key] = _json_value(record.args[position])
        position += 1
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (the keys are in the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        first = message.split(" ", 1)[0]
        event: str | None = first if _EVENT.fullmatch(first) else None
        fields = message_fields(record)
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            event = "http.access"
            fields = {
                name: _json_value(record.args.get(atom))
                for atom, name in _ACCESS_ATOMS.items()
                if atom in record.args
            }
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "event": event,
            "message": message,
            "fields": fields,
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str).translate(_JSON_ESCAPES)


def configured_format() -> str:
    """``LOG_FORMAT`` from the settings; "text" while the settings cannot be read (the
    configuration error is reported by whoever reads them next, in either format)."""
    from worker.core.settings import ConfigError, get_settings

    try:
        return get_settings().log_format
    except ConfigError:
        return "text"


def formatter_for(
    log_format: str, fmt: str | None = FORMAT, datefmt: str | None = None
) -> logging.Formatter:
    """The formatter for `log_format`; `fmt` and `datefmt` shape the text one only."""
    if log_format == "json":
        return JsonFormatter()
    return OneLineFormatter(fmt, datefmt)


def configure_logging(level: int = logging.INFO, log_format: str | None = None) -> None:
    """Root logging to stdout in ``LOG_FORMAT`` (idempotent; a second call switches format).

    A handler someone else gave a callhook formatter (a test's capture) is left alone and
    stands in for stdout.
    """
    formatter = formatter_for(log_format or configured_format())
    root = logging.getLogger()
    own = next((h for h in root.handlers if h.name == HANDLER_NAME), None)
    if own is not None:
        own.setFormatter(formatter)
    elif not any(isinstance(h.formatter, OneLineFormatter | JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.name = HANDLER_NAME
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
