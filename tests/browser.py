"""Headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright.

A test module uses it with ``pytestmark = needs_chromium`` and
``from tests.browser import browser  # noqa: F401`` (a module-scoped fixture).
CALLHOOK_REQUIRE_BROWSER turns a missing Chromium into an error instead of a skip (CI);
CALLHOOK_SCREENSHOTS names a folder to keep screenshots of the pages as the tests see them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
if CHROMIUM is None and os.environ.get("CALLHOOK_REQUIRE_BROWSER"):
    raise RuntimeError("CALLHOOK_REQUIRE_BROWSER is set but no chromium binary was found")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium: install Debian's chromium package (.ci/run does)"
)
# As the machine's notes advise: no background networking (the sandbox has no internet).
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


# How long an `expect` waits for the page (Playwright's default is 5 s): what a page shows
# often waits on the worker (fold, CRM lookup, pop), which a loaded CI machine running
# three test processes beside Chromium can take longer than 5 s to finish.
EXPECT_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def screenshot(page: Any, name: str) -> None:
    """Keep what the page looks like, when CALLHOOK_SCREENSHOTS names a folder."""
    folder = os.environ.get("CALLHOOK_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
