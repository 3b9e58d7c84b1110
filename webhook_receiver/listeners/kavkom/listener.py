"""The listener as one object: its settings, and running its tasks together until stopped.

`KavkomListener` only wires the pieces (the token keeper, one `ExtensionLink` per
extension, the message store) and owns the process's life: it stops on `stop()` or
SIGTERM/SIGINT, closes every connection, stores what was already received within
Heroku's 30 s between SIGTERM and SIGKILL, and marks itself `failed` when a task dies of
a bug (network problems are retried, never fatal), so the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

import requests

from webhook_receiver.listeners.kavkom.backoff import Backoff
from webhook_receiver.listeners.kavkom.connection import ExtensionLink
from webhook_receiver.listeners.kavkom.endpoints import live_endpoints, parse_extensions
from webhook_receiver.listeners.kavkom.handshake import SocketOptions
from webhook_receiver.listeners.kavkom.lifecycle import Lifecycle, settle
from webhook_receiver.listeners.kavkom.logs import log, redactor
from webhook_receiver.listeners.kavkom.messages import LAST, Message, store_messages
from webhook_receiver.listeners.kavkom.token_keeper import TokenKeeper
from webhook_receiver.listeners.kavkom.tokens import TokenRequest

if TYPE_CHECKING:
    from webhook_receiver.mapping import PlatformMapping


class KavkomListener:
    """One connection per extension, a shared access token, every ``call`` into ``ingest``.

    ``await serve()`` runs until ``stop()`` (thread-safe) or, with ``handle_signals``,
    SIGTERM/SIGINT. Every delay is a parameter, so tests run in a second.
    """

    def __init__(
        self,
        *,
        mapping: PlatformMapping,
        refresh_token: str,
        extensions: Sequence[str],
        live_url: str = "https://live.kavkom.com",
        user_uuid: str | None = None,
        application: str = "callhook",
        backoff: Backoff | None = None,
        renew_before_s: float = 60.0,
        min_renew_s: float = 5.0,
        default_lifetime_s: float = 600.0,
        overlap_s: float = 2.0,
        stable_after_s: float = 30.0,
        store_retry_s: float = 30.0,
        http_timeouts: tuple[float, float] = (5.0, 15.0),
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        close_timeout_s: float = 5.0,
        grace_s: float = 20.0,
    ):
        self.extensions = parse_extensions(",".join(extensions))
        if not self.extensions:
            raise ValueError("no extension to listen to: set KAVKOM_LISTEN_EXTENSIONS")
        if not refresh_token.strip():
            raise ValueError("no refresh token: set KAVKOM_REFRESH_TOKEN")
        self.mapping = mapping
        self.refresh_token = refresh_token.strip()
        self.api_url, self.ws_url = live_endpoints(live_url)
        self.user_uuid = user_uuid
        self.application = application
        self.backoff = backoff or Backoff()
        self.renew_before_s = renew_before_s
        self.min_renew_s = min_renew_s
        self.default_lifetime_s = default_lifetime_s
        self.overlap_s = overlap_s
        self.stable_after_s = stable_after_s
        self.store_retry_s = store_retry_s
        self.http_timeouts = http_timeouts
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.close_timeout_s = close_timeout_s
        self.grace_s = grace_s
        redactor.secrets.add(self.refresh_token)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._lifecycle: Lifecycle | None = None
        self._http = requests.Session()
        self.failed = False  # a task crashed: the process should exit non-zero

    # -- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the listener to finish (from any thread); ``serve`` returns once it has."""
        loop, lifecycle = self._loop, self._lifecycle
        if loop is None or lifecycle is None:
            self._stop_requested = True
        else:
            loop.call_soon_threadsafe(lifecycle.begin_stop, None)

    def _token_keeper(self, lifecycle: Lifecycle) -> TokenKeeper:
        request = TokenRequest(
            http=self._http,
            api_url=self.api_url,
            refresh_token=self.refresh_token,
            extensions=self.extensions,
            application=self.application,
            user_uuid=self.user_uuid,
            timeouts=self.http_timeouts,
            default_lifetime_s=self.default_lifetime_s,
        )
        return TokenKeeper(
            lifecycle,
            request.acquire,
            backoff=self.backoff,
            renew_before_s=self.renew_before_s,
            min_renew_s=self.min_renew_s,
            default_lifetime_s=self.default_lifetime_s,
        )

    def _links(
        self, lifecycle: Lifecycle, keeper: TokenKeeper, queue: asyncio.Queue[Message]
    ) -> list[ExtensionLink]:
        socket = SocketOptions(
            ws_url=self.ws_url,
            refresh_token=self.refresh_token,
            open_timeout_s=self.open_timeout_s,
            ping_interval_s=self.ping_interval_s,
            close_timeout_s=self.close_timeout_s,
        )
        return [
            ExtensionLink(
                ext,
                lifecycle=lifecycle,
                keeper=keeper,
                queue=queue,
                socket=socket,
                backoff=self.backoff,
                overlap_s=self.overlap_s,
                stable_after_s=self.stable_after_s,
            )
            for ext in self.extensions
        ]

    async def serve(self, *, handle_signals: bool = False) -> None:
        """Run until stopped; then close every connection and store what was received."""
        lifecycle = Lifecycle()
        keeper = self._token_keeper(lifecycle)
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=1000)
        links = self._links(lifecycle, keeper, queue)
        self._lifecycle = lifecycle
        self._loop = loop = asyncio.get_running_loop()
        if self._stop_requested:
            lifecycle.stopping.set()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lifecycle.begin_stop, sig.name)
        log.info(
            "listener.kavkom.starting url=%s extensions=%s",
            self.ws_url,
            ",".join(self.extensions),
        )
        keeper_task = asyncio.create_task(keeper.keep(), name="kavkom-token")
        store = asyncio.create_task(
            store_messages(
                queue,
                self.mapping,
                lifecycle,
                backoff=self.backoff,
                store_retry_s=self.store_retry_s,
            ),
            name="kavkom-store",
        )
        listeners = [
            asyncio.create_task(link.run(), name=f"kavkom-ext-{link.ext}") for link in links
        ]
        stop = asyncio.create_task(lifecycle.stopping.wait())
        try:
            tasks = [stop, keeper_task, store, *listeners]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in (keeper_task, store, *listeners):
                if task.done() and not lifecycle.stopped:
                    # A bug, not a network problem (those are retried): exit non-zero so
                    # the platform restarts the process, rather than listen half-blind.
                    error = task.exception()
                    log.error(
                        "listener.kavkom.crashed task=%s error=%s",
                        task.get_name(),
                        type(error).__name__ if error else "returned",
                    )
                    self.failed = True
        finally:
            lifecycle.stopping.set()
            # Heroku allows 30 s between SIGTERM and SIGKILL: close the sockets, store what
            # was already received, and give up on whatever is left after `grace_s`.
            deadline = loop.time() + self.grace_s
            _, late = await asyncio.wait([keeper_task, *listeners], timeout=self.grace_s)
            retiring = [task for link in links for task in link.retiring]
            await settle([stop, *late, *retiring])
            await queue.put(LAST)  # the store task's last item
            with contextlib.suppress(TimeoutError):
                left = max(1.0, deadline - loop.time())
                await asyncio.wait_for(asyncio.shield(store), timeout=left)
            await settle([store])
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await asyncio.to_thread(self._http.close)
            log.info("listener.kavkom.stopped")
