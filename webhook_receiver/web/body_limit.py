"""Request bodies are read at most once, and at most ``limit + 1`` bytes, whatever their framing.

Flask's ``MAX_CONTENT_LENGTH`` refuses a ``Content-Length`` over the limit, but a
body sent with ``Transfer-Encoding: chunked`` has no length: werkzeug then reads
the stream up to the limit and stops there, without telling the app whether more
followed. A chunked delivery one byte over the limit was cut and accepted, its tail
lost. This middleware, installed once for the whole app in ``create_app``, reads a
length-less body itself, at most ``limit + 1`` bytes: over the limit it answers 413
before the app runs; within it, the app gets the body back with its length, as if
it had been sent with a ``Content-Length`` all along.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import InputStream, StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("callhook")

READ_CHUNK = 64 * 1024


class BodyLimit:
    """WSGI middleware: 413 for a body over `limit` bytes, however it is framed."""

    def __init__(self, app: WSGIApplication, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        declared = environ.get("CONTENT_LENGTH", "").strip()
        if declared and not chunked:
            # The server frames the body by this length and the app reads no more than it:
            # only its size is checked here.
            if not (declared.isascii() and declared.isdigit()):
                return _answer(start_response, 400, "bad_request", "Content-Length is not a number")
            if len(declared.lstrip("0")) > 18 or int(declared) > self.limit:
                return self._too_large(start_response)
            return self.app(environ, start_response)
        if not chunked and not environ.get("wsgi.input_terminated"):
            # Neither a length nor a stream the server ends: HTTP/1.1 says there is no body,
            # and werkzeug reads none.
            return self.app(environ, start_response)
        # A chunked body (werkzeug would ignore a Content-Length beside it), or a server
        # that ends the stream itself (gunicorn marks every request so).
        body = _read_at_most(environ["wsgi.input"], self.limit + 1)
        if len(body) > self.limit:
            return self._too_large(start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # now framed by its length
        return self.app(environ, start_response)

    def _too_large(self, start_response: StartResponse) -> list[bytes]:
        log.info("webhook.too_large limit=%s", self.limit)
        return _answer(start_response, 413, "too_large", f"body over {self.limit} bytes")


def _read_at_most(stream: InputStream, size: int) -> bytes:
    """Up to `size` bytes: fewer only at the end of the body."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        chunk = stream.read(min(left, READ_CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _answer(start_response: StartResponse, status: int, error: str, reason: str) -> list[bytes]:
    """The app's JSON error body, answered before the app runs."""
    body = json.dumps({"error": error, "reason": reason}).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
