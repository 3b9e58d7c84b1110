"""Where the listener connects, and to which extensions, from the environment.

Kavkom serves the token API and the ``/calls`` WebSocket from one host, so one setting
(``KAVKOM_LIVE_URL``) gives both; ``KAVKOM_LISTEN_EXTENSIONS`` is a comma-separated list.
Both are read here, once, so the CLI's start-up check and the listener agree.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

ACQUIRE_PATH = "/api/auth/acquire-access"
CALLS_PATH = "/calls"


def live_endpoints(live_url: str) -> tuple[str, str]:
    """(the auth API's base URL, the ``/calls`` WebSocket URL) from ``KAVKOM_LIVE_URL``.

    Kavkom's documentation serves both from one host: ``https://live.kavkom.com/api/auth/...``
    and ``wss://live.kavkom.com/calls``. Either scheme may be configured.
    """
    parts = urlsplit(live_url.strip())
    scheme = {"https": "https", "wss": "https", "http": "http", "ws": "http"}.get(
        parts.scheme.lower()
    )
    if scheme is None or not parts.netloc:
        raise ValueError(
            f"KAVKOM_LIVE_URL must be an https:// (or wss://) address, not {live_url!r}"
        )
    path = parts.path.rstrip("/")
    ws_scheme = "wss" if scheme == "https" else "ws"
    return (
        urlunsplit((scheme, parts.netloc, path, "", "")),
        urlunsplit((ws_scheme, parts.netloc, path + CALLS_PATH, "", "")),
    )


def parse_extensions(text: str) -> list[str]:
    """``KAVKOM_LISTEN_EXTENSIONS`` ("1001, 1002") as a list, blanks and repeats dropped."""
    return list(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))
