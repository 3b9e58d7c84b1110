"""Security headers on every answer, set once for the whole app.

- ``Content-Security-Policy``: scripts only from this site or inline with the request's
  nonce (``{{ csp_nonce() }}`` in a template), nothing loaded from elsewhere, no plugins,
  and ``frame-ancestors 'none'``: no other site may frame a page holding an agent's or an
  operator's session (clickjacking a "Call" button). The one exception is the HubSpot
  calling widget, which HubSpot frames by design: HubSpot's origins only. Inline styles
  stay allowed: every template keeps its CSS beside it, and autoescaping keeps request
  text out of markup.
- ``Referrer-Policy: no-referrer``: a page opened from an agent's page (a HubSpot record)
  never learns the URL, which may still carry a token on the first load. The operator
  console sends ``same-origin`` instead: its URLs carry no token, and its forms' POSTs
  need a real ``Origin`` for the cross-site check.
- ``Cache-Control: no-store`` unless a view chose otherwise (static files): answers carry
  call data or tokens, and no shared or browser cache should keep them.
- ``X-Content-Type-Options: nosniff``: a JSON error quoting a payload is never read as HTML.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g, request

from worker.core.settings import get_settings

# HubSpot frames a calling extension in its app (app.hubspot.com, app-eu1.hubspot.com, …):
# https://developers.hubspot.com/docs/api/crm/extensions/calling-sdk. The origins are
# HUBSPOT_FRAME_ORIGINS, so a sandbox or a test host can stand in for HubSpot.
FRAMED_BY_HUBSPOT = {"hubspot_widget.widget"}
CONSOLE_BLUEPRINTS = ("console_", "operator")


def csp_nonce() -> str:
    """This request's nonce for inline scripts (one per request, unguessable)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def policy(nonce: str, frame_ancestors: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )


def _add_headers(response: Response) -> Response:
    framed = request.endpoint in FRAMED_BY_HUBSPOT
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # The console's pages carry no token in their URLs (the sign-in link redirects it away)
    # and its forms must say where they come from: under no-referrer, Chromium sends
    # `Origin: null` with a form's POST, which the operator check refuses as cross-site.
    console = request.blueprint is not None and request.blueprint.startswith(CONSOLE_BLUEPRINTS)
    headers.setdefault("Referrer-Policy", "same-origin" if console else "no-referrer")
    if request.endpoint != "static":
        headers.setdefault("Cache-Control", "no-store")
    if response.mimetype == "text/html":
        headers["Content-Security-Policy"] = policy(
            csp_nonce(), get_settings().hubspot_frame_origins if framed else "'none'"
        )
        if not framed:
            headers["X-Frame-Options"] = "DENY"
    return response


def install(app: Flask) -> None:
    app.after_request(_add_headers)
    app.context_processor(lambda: {"csp_nonce": csp_nonce})
