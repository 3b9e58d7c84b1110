"""The lifecycle every fake HTTP service in tests/ shares: a WSGI app on a real socket.

A fake subclasses `FakeHttpServer`, implements `_wsgi`, and is used as
``with FakeX(...) as fake:``; `root_url` is where it listens.
"""

from __future__ import annotations

import threading
from typing import Any, Self

from werkzeug.serving import make_server


class FakeHttpServer:
    _server: Any = None

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        raise NotImplementedError

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
