"""Signing an operator in, as a person does: `callhook admin link EMAIL`, then the link.

Shared by the console's tests (Flask test client and Chromium alike).
"""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner


def operator_link_path(email: str = "ops@example.com") -> str:
    """The path of a fresh sign-in link, printed by the real command."""
    from webhook_receiver.cli.main import cli

    result = CliRunner().invoke(cli, ["admin", "link", email])
    assert result.exit_code == 0, result.output
    link = result.output.strip()
    return "/admin/signin" + link.split("/admin/signin", 1)[1]


def signed_in_client(app: Any, email: str = "ops@example.com") -> Any:
    """A Flask test client holding an operator's sign-in cookie."""
    client = app.test_client()
    answer = client.get(operator_link_path(email))
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return client


def signed_in_page(browser: Any, base_url: str, email: str = "ops@example.com") -> Any:
    """A Chromium page (its own context) signed in to the console at `base_url`."""
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    page = context.new_page()
    page.goto(base_url + operator_link_path(email))
    return page
