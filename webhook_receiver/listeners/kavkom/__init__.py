"""Kavkom's ``/calls`` WebSocket: call messages in, through the same intake as webhooks.

Source: Kavkom API documentation, https://help.kavkom.com/en/api-integration/kavkom-api/
(sections on the live API: tokens and the /calls WebSocket). The package is split by
responsibility, each module saying what Kavkom documents and what it leaves open:

- ``endpoints``: ``KAVKOM_LIVE_URL`` and ``KAVKOM_LISTEN_EXTENSIONS`` read once;
- ``tokens``: acquire-access and ``expiresAt`` (on Kavkom's clock);
- ``token_keeper``: one token for every connection, renewed ahead of its expiry;
- ``handshake``: opening a WebSocket, and what each refusal means;
- ``connection``: one extension's connection, reconnected and moved to new tokens;
- ``messages``: frames in (pings answered), deliveries out to the intake;
- ``backoff``, ``lifecycle``, ``logs``: delays, the stop signal, token-free logs;
- ``listener``: the pieces wired and run together; ``process``: the Procfile's process.

Failures: a drop reconnects with exponential backoff and jitter (capped at a minute); a
refusal that retrying cannot fix (the refresh token refused, a 406, a 404) is logged once
with its cause and retried only after a long pause, so a misconfiguration never hammers
Kavkom. Tokens never reach the logs (``logs``).

Callers import from here (``webhook_receiver.listeners.kavkom``), not from the modules.
"""

from webhook_receiver.listeners.kavkom.backoff import Backoff
from webhook_receiver.listeners.kavkom.endpoints import live_endpoints, parse_extensions
from webhook_receiver.listeners.kavkom.listener import KavkomListener
from webhook_receiver.listeners.kavkom.process import listener_from_settings, run
from webhook_receiver.listeners.kavkom.tokens import (
    AccessToken,
    AccessUnavailable,
    RefreshTokenRefused,
    parse_expiry,
)

__all__ = [
    "AccessToken",
    "AccessUnavailable",
    "Backoff",
    "KavkomListener",
    "RefreshTokenRefused",
    "listener_from_settings",
    "live_endpoints",
    "parse_expiry",
    "parse_extensions",
    "run",
]
