"""``callhook listen | kazoo | uis``: connecting callhook to the platforms.

- ``callhook listen kavkom``: the Procfile's ``listener`` process (Kavkom's /calls WebSocket).
- ``callhook kazoo webhooks [--apply] [--format auto|json|form]``: the account's hooks.
- ``callhook uis check-template FILE``: a UIS notification template, checked before pasting.

The groups are registered in ``webhook_receiver/cli/main.py`` with ``cli.add_command``.
"""

from __future__ import annotations

from typing import TextIO

import click

from webhook_receiver.cli.support import mappings_or_exit, settings_or_exit
from worker.core.log_format import configure_logging


# -- listen ------------------------------------------------------------------------------------
@click.group()
def listen() -> None:
    """Hold a platform's event stream open (the Procfile's `listener` process)."""


@listen.command("kavkom")
def listen_kavkom() -> None:
    """Listen to Kavkom's /calls WebSocket for KAVKOM_LISTEN_EXTENSIONS until SIGTERM.

    Each call message is stored, deduplicated, mapped and logged as a webhook would be.
    """
    from webhook_receiver.listeners.kavkom import live_endpoints, parse_extensions, run

    settings = settings_or_exit()
    token = settings.kavkom_refresh_token
    missing = []
    if token is None or not token.get_secret_value().strip():
        missing.append("KAVKOM_REFRESH_TOKEN (the refresh token Kavkom gives for the WebSocket)")
    if not parse_extensions(settings.kavkom_listen_extensions):
        missing.append("KAVKOM_LISTEN_EXTENSIONS (comma-separated extensions, e.g. 1001,1002)")
    if missing:
        raise click.ClickException(
            "the Kavkom listener needs " + " and ".join(missing) + "; set it in the environment"
        )
    try:
        live_endpoints(settings.kavkom_live_url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    files = mappings_or_exit(settings)
    if "kavkom" not in files.platforms:
        raise click.ClickException(f"no kavkom mapping in {settings.mappings_dir}")
    # Heroku reads stdout; the web and worker processes log the same way.
    configure_logging()
    run(settings)


# -- kazoo --------------------------------------------------------------------------------------
@click.group()
def kazoo() -> None:
    """KAZOO (2600Hz): set up the account's webhooks."""


@kazoo.command("webhooks")
@click.option("--apply", is_flag=True, help="Create the missing hooks (default: show the plan).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "json", "form"]),
    default="auto",
    show_default=True,
    help="Body format: json needs KAZOO 4.3+; auto asks the server's version.",
)
@click.option(
    "--include-subaccounts", is_flag=True, help="Also send the sub-accounts' calls (resellers)."
)
def kazoo_webhooks(apply: bool, fmt: str, include_subaccounts: bool) -> None:
    """Create one hook per channel event towards PUBLIC_BASE_URL/webhooks/kazoo.

    Existing hooks with the same URI are kept, so running it again creates nothing twice.
    Without --apply nothing is changed: the plan is printed, or, when the KAZOO API is not
    configured, the curl commands that create the hooks by hand.
    """
    from webhook_receiver.deliveries.auth import configured_secrets
    from worker.telephony.kazoo_webhooks import (
        KazooSetupError,
        KazooWebhooksApi,
        curl_commands,
        set_up_webhooks,
    )

    settings = settings_or_exit()
    mapping = mappings_or_exit(settings).platforms.get("kazoo")
    if mapping is None:
        raise click.ClickException(f"no kazoo mapping in {settings.mappings_dir}")
    secrets = configured_secrets(mapping.auth)
    secret = secrets[0] if secrets else ""
    token = settings.kazoo_auth_token.get_secret_value() if settings.kazoo_auth_token else ""
    api_configured = bool(settings.kazoo_api_url and settings.kazoo_account_id and token)

    if not api_configured and not apply:
        click.echo(
            "KAZOO_API_URL, KAZOO_ACCOUNT_ID or KAZOO_AUTH_TOKEN is not set, so the account's "
            "hooks cannot be listed. To create them by hand (the shell reads the secrets from "
            "the environment):\n"
        )
        click.echo(
            curl_commands(
                public_base_url=settings.public_base_url,
                fmt="json" if fmt == "json" else "form-data",
                include_subaccounts=include_subaccounts,
            )
        )
        if fmt == "auto":
            click.echo('\nOn KAZOO 4.3 or later, add "format": "json" (or pass --format json).')
        return
    try:
        api = KazooWebhooksApi(
            base_url=settings.kazoo_api_url,
            account_id=settings.kazoo_account_id,
            auth_token=token,
        )
        try:
            plan = set_up_webhooks(
                api,
                public_base_url=settings.public_base_url,
                secret=secret,
                fmt=fmt,
                include_subaccounts=include_subaccounts,
                apply=apply,
            )
        finally:
            api.close()
    except KazooSetupError as exc:
        raise click.ClickException(str(exc)) from None
    for line in plan.describe(secret):
        click.echo(line)
    if not plan.to_create:
        click.echo("nothing to create" if not apply else "done")
    elif not apply:
        click.echo(f"{len(plan.to_create)} hook(s) to create: run again with --apply")
    if settings.public_base_url.startswith("http://"):
        click.echo("warning: PUBLIC_BASE_URL is http://; the secret travels in clear text")


# -- uis ------------------------------------------------------------------------------------------
@click.group()
def uis() -> None:
    """UIS (CoMagic, CallGear, Novofon): check notification templates."""


@uis.command("check-template")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
def uis_check_template(file: TextIO) -> None:
    """Check the JSON body template of a UIS notification (FILE, or - for standard input).

    Fills the {{variables}} as UIS does, then reads the body as callhook would; exits 1
    and lists the problems when UIS's deliveries would be refused.
    """
    from webhook_receiver.cli.uis_templates import inspect_template

    settings = settings_or_exit()
    mapping = mappings_or_exit(settings).platforms.get("uis")
    if mapping is None:
        raise click.ClickException(f"no uis mapping in {settings.mappings_dir}")
    report = inspect_template(file.read(), mapping, default_region=settings.default_region)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    if report.ok:
        click.echo(f"ok: {report.summary()}")
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.ok:
        raise SystemExit(1)
