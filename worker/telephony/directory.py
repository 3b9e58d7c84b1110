"""Who each telephony platform knows: its users or extensions, read through its API.

``callhook agents discover`` and the console's discovery page start here. For every
platform whose API is configured (the same settings the click-to-call registry reads), one
small module lists the accounts agents.yaml can name: Kavkom extensions
(``kavkom_directory``), KAZOO users and their devices (``kazoo_directory``), UIS employees
(``uis_directory``), Kwebbl user extensions (``kwebbl_directory``).

Listing is read-only and bounded: fixed (connect, read) timeouts, at most ``MAX_PAGES``
pages per platform, and the platforms are asked side by side so the slowest one sets the
wait. One platform failing (unreachable, token refused) is reported with its reason and
never stops the others. The HTTP layer is the click-to-call clients' own
(``worker.telephony.base.PlatformHttp``): no retries, no URL or header in any message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from worker.core.settings import Settings
from worker.telephony.base import ClickToCallError, Timeouts
from worker.telephony.users import PlatformUser

log = logging.getLogger("callhook.directory")

# Shorter than a click-to-call's: nothing rings, and an operator is waiting on a page.
DIRECTORY_TIMEOUTS: Timeouts = (3.0, 10.0)


@dataclass
class PlatformListing:
    """What one platform answered: its users, or why it could not be listed."""

    platform: str
    label: str
    users: list[PlatformUser] = field(default_factory=list)
    error: str | None = None
    truncated: bool = False


Lister = Callable[[Settings, Timeouts], "tuple[list[PlatformUser], bool]"]


def _listers() -> dict[str, tuple[str, Callable[[Settings], bool], Lister]]:
    """platform → (label, "is its API configured?", lister), in agents.yaml's order.

    Imported here so that a module importing this one for its types does not pull every
    client in.
    """
    from worker.telephony import kavkom_directory, kazoo_directory, kwebbl_directory, uis_directory

    return {
        "kavkom": ("Kavkom", kavkom_directory.configured, kavkom_directory.list_users),
        "kwebbl": ("Kwebbl", kwebbl_directory.configured, kwebbl_directory.list_users),
        "kazoo": ("KAZOO", kazoo_directory.configured, kazoo_directory.list_users),
        "uis": ("UIS", uis_directory.configured, uis_directory.list_users),
    }


def _one(
    name: str, label: str, lister: Lister, settings: Settings, timeouts: Timeouts
) -> PlatformListing:
    try:
        users, truncated = lister(settings, timeouts)
    except ClickToCallError as exc:
        # The clients write these messages themselves, platform text redacted.
        return PlatformListing(name, label, error=exc.message)
    except Exception as exc:  # a bug in one lister must not hide the other platforms
        log.exception("directory.failed platform=%s", name)
        return PlatformListing(name, label, error=f"unexpected error: {type(exc).__name__}")
    return PlatformListing(name, label, users=users, truncated=truncated)


def list_platform_users(
    settings: Settings, timeouts: Timeouts = DIRECTORY_TIMEOUTS
) -> list[PlatformListing]:
    """Every configured platform's users, asked side by side; failures reported per platform."""
    listers = _listers()
    wanted = [
        (n, label, lister) for n, (label, ready, lister) in listers.items() if ready(settings)
    ]
    if not wanted:
        return []
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        futures = [
            pool.submit(_one, n, label, lister, settings, timeouts) for n, label, lister in wanted
        ]
        return [future.result() for future in futures]
