"""Log lines that a request cannot forge.

Log messages carry request-derived text (a platform name from the URL, a reason quoting a
payload value, an agent's email). A ``%0A`` in ``/webhooks/<name>`` would otherwise start
a new, forged log line, and terminal escapes could rewrite an operator's screen. Escaping
is done once, in the formatter every process uses, so no call site can forget it: control
characters (C0, DEL, C1) and Unicode line separators become visible ``\\xNN``/``\\uNNNN``
escapes, and every record stays one line. Tracebacks, appended after the message by
``logging.Formatter.format``, keep their own line breaks.
"""

from __future__ import annotations

import logging
import sys

_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def escape(text: str) -> str:
    """`text` on one line, its control characters shown as escapes."""
    return text.translate(_ESCAPES)


class OneLineFormatter(logging.Formatter):
    """A `logging.Formatter` whose message part is always one escaped line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


def configure_logging(level: int = logging.INFO) -> None:
    """Root logging to stdout through `OneLineFormatter` (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, OneLineFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(OneLineFormatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
