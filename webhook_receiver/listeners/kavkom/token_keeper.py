"""One access token shared by every connection, renewed before it expires.

Whether an open connection survives its token's expiry is not documented, so the
listener never finds out: the keeper gets a new token ahead of ``expiresAt`` (or at once
when a handshake refuses the current one) and announces each new one by its generation;
the connections then move to it (`connection.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from webhook_receiver.listeners.kavkom.backoff import Backoff
from webhook_receiver.listeners.kavkom.lifecycle import Lifecycle, settle
from webhook_receiver.listeners.kavkom.logs import log
from webhook_receiver.listeners.kavkom.tokens import (
    AccessToken,
    AccessUnavailable,
    RefreshTokenRefused,
)


class TokenKeeper:
    """Holds the current token (`token`); `keep()` runs until the listener stops."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        acquire: Callable[[], tuple[str, float | None]],
        *,
        backoff: Backoff,
        renew_before_s: float,
        min_renew_s: float,
        default_lifetime_s: float,
    ):
        self.lifecycle = lifecycle
        self.acquire = acquire  # blocking: run in a thread
        self.backoff = backoff
        self.renew_before_s = renew_before_s
        self.min_renew_s = min_renew_s
        self.default_lifetime_s = default_lifetime_s
        self.token: AccessToken | None = None
        self._generation = 0
        self._changed = asyncio.Event()
        self._renew_now = asyncio.Event()

    def _renewal_delay(self, token: AccessToken) -> float:
        now = time.time()
        if token.expires_at is None:
            return self.default_lifetime_s
        lifetime = max(0.0, token.expires_at - token.obtained_at)
        # A minute ahead for a long-lived token, a quarter of its life for a short one.
        lead = min(self.renew_before_s, lifetime / 4)
        return max(self.min_renew_s, token.expires_at - lead - now)

    async def keep(self) -> None:
        """Hold a valid access token: get one, renew it before expiry or when refused."""
        attempt = 0
        while not self.lifecycle.stopped:
            try:
                value, expires_at = await asyncio.to_thread(self.acquire)
            except RefreshTokenRefused as exc:
                attempt = 0
                log.error(
                    "listener.kavkom.token_refused %s; next try in %.0f s",
                    exc,
                    self.backoff.refused_s,
                )
                if await self.lifecycle.pause(self.backoff.refused_s):
                    return
                continue
            except AccessUnavailable as exc:
                attempt += 1
                delay = self.backoff.delay(attempt)
                log.warning("listener.kavkom.token_unavailable %s; retry in %.1f s", exc, delay)
                if await self.lifecycle.pause(delay):
                    return
                continue
            attempt = 0
            token = self._publish(value, expires_at)
            delay = self._renewal_delay(token)
            log.info(
                "listener.kavkom.token_acquired generation=%s expires_at=%s renew_in=%.1fs",
                token.generation,
                (
                    datetime.fromtimestamp(expires_at, UTC).isoformat()
                    if expires_at is not None
                    else "unknown"
                ),
                delay,
            )
            renew = asyncio.create_task(self._renew_now.wait())
            stop = asyncio.create_task(self.lifecycle.stopping.wait())
            await asyncio.wait({renew, stop}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            await settle([renew, stop])
            self._renew_now.clear()

    def _publish(self, value: str, expires_at: float | None) -> AccessToken:
        self._generation += 1
        self.token = AccessToken(value, expires_at, self._generation, time.time())
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self.token

    def refused(self, generation: int) -> None:
        """The WebSocket refused this token: get another (once, whoever reports it)."""
        token = self.token
        if token is not None and token.generation == generation and not token.refused:
            token.refused = True
            self._renew_now.set()

    async def usable(self, newer_than: int = 0) -> AccessToken | None:
        """The current token once there is a usable one (newer than a given one); None on stop."""
        while not self.lifecycle.stopped:
            token = self.token
            if token is not None and not token.refused and token.generation > newer_than:
                return token
            changed = asyncio.create_task(self._changed.wait())
            stop = asyncio.create_task(self.lifecycle.stopping.wait())
            await asyncio.wait({changed, stop}, return_when=asyncio.FIRST_COMPLETED)
            await settle([changed, stop])
        return None
