"""The operator console: every call's fate, its problems and their fixes, in a browser.

Server-rendered pages under ``/admin``, each behind the operator sign-in
(``webhook_receiver/web/operator_auth.py``). One module per page family, each with its own
blueprint; the Problems page's buttons have theirs (``failed_syncs``: Retry; ``replay``:
Replay) and the mapping sandbox its own. The templates live in ``templates/console/`` and
extend ``console/base.html``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, request

from webhook_receiver.web.console import (
    agents,
    calls,
    failed_syncs,
    health,
    problems,
    replay,
    sandbox,
)
from worker.core.numbers import display
from worker.core.settings import get_settings

BLUEPRINTS: tuple[Blueprint, ...] = (
    calls.bp,
    problems.bp,
    failed_syncs.bp,
    replay.bp,
    sandbox.bp,
    health.bp,
    agents.bp,
)

# The console's sections, in the navigation's order: (endpoint, label).
NAV: tuple[tuple[str, str], ...] = (
    ("console_calls.calls", "Calls"),
    ("console_problems.problems", "Problems"),
    ("console_health.health", "Health"),
    ("console_agents.agents", "Agents"),
)


def install(app: Flask) -> None:
    """Register the console's pages and what every console template may use."""
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    # Numbers as people read them ("+33 6 12 34 56 78"), on every console page alike.
    app.add_template_filter(display, "phone")

    @app.context_processor
    def _console_context() -> dict[str, Any]:
        from webhook_receiver.web.operator_auth import signed_in_operator

        return {
            "console_nav": [(e, label) for e, label in NAV if e in app.view_functions],
            "console_operator": signed_in_operator() if request else None,
            "console_dry_run": get_settings().dry_run,
        }
