"""The lifecycle every fake HTTP service in tests/ shares: a WSGI app on a real socket.

A fake subclasses `FakeHttpServer`, implements `_handle` (or its own `_wsgi`), keeps a
`_lock` and a `_log`, and is used as ``with FakeX(...) as fake:``; `root_url` is where it
listens and `requests()` what it received.
"""

from __future__ import annotations

import threading
from typing import Any, Self

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class FakeHttpServer:
    _server: Any = None
    _lock: threading.Lock
    _log: list[dict[str, Any]]

    def _handle(self, request: Request) -> Response:
        raise NotImplementedError

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data(as_text=True)
        response = self._handle(request)
        with self._lock:
            self._log.append(self._entry(request, raw, response))
        return response(environ, start_response)

    @staticmethod
    def _entry(
        request: Request, raw: str, response: Response, *, force_json: bool = False
    ) -> dict[str, Any]:
        """One received request, as tests read it back from `requests()`."""
        return {
            "method": request.method,
            "path": request.path,
            "query": request.args.to_dict(),
            "headers": dict(request.headers),
            "body": raw,
            "json": request.get_json(silent=True, force=force_json),
            "status": response.status_code,
        }

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def __enter__(self) -> Self:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        # A short poll interval: shutdown() waits for it at every test's end.
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"
