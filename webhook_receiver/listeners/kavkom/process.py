"""The Procfile's ``listener`` process (``callhook listen kavkom``): settings in, exit code out.

Kept apart from the listener so the listener itself takes plain values (tests build it
with short delays) while the process reads the environment, configures Celery (the
intake publishes tasks) and turns a crashed task into a non-zero exit for the platform.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from webhook_receiver.listeners.kavkom.endpoints import parse_extensions
from webhook_receiver.listeners.kavkom.listener import KavkomListener

if TYPE_CHECKING:
    from worker.core.settings import Settings


def listener_from_settings(settings: Settings, **options: Any) -> KavkomListener:
    """The listener the environment describes (mapping, tokens, URL, extensions)."""
    from webhook_receiver.mapping import load_mappings

    mapping = load_mappings(settings.mappings_dir).platforms.get("kavkom")
    if mapping is None:
        raise ValueError(f"no kavkom mapping in {settings.mappings_dir}")
    refresh = settings.kavkom_refresh_token
    return KavkomListener(
        mapping=mapping,
        refresh_token=refresh.get_secret_value() if refresh is not None else "",
        extensions=parse_extensions(settings.kavkom_listen_extensions),
        live_url=settings.kavkom_live_url,
        **options,
    )


def run(settings: Settings, **options: Any) -> None:
    """The ``listener`` process: listen until SIGTERM (Heroku's stop), then exit cleanly."""
    from worker.tasks.celery_app import configure as configure_celery

    listener = listener_from_settings(settings, **options)
    configure_celery()
    asyncio.run(listener.serve(handle_signals=True))
    if listener.failed:
        raise SystemExit(1)
