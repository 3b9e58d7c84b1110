"""``callhook kwebbl``: connect the Kwebbl account, see its state, manage the subscription.

Connecting happens in a browser (``connect-link`` prints the admin's link); everything
else talks to Kwebbl with the stored OAuth token (``worker.telephony.kwebbl_oauth``).
No command prints a token or the webhook secret: callback URLs are shown masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from webhook_receiver.cli.support import mappings_or_exit, settings_or_exit
from worker.core.settings import Settings


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


@click.group()
def kwebbl() -> None:
    """Kwebbl: connect the account (OAuth), check it, manage the event subscription."""


@kwebbl.command("connect-link")
def connect_link() -> None:
    """Print the admin's link that connects Kwebbl (open it within 30 minutes)."""
    from worker.telephony.kwebbl_oauth import (
        CALLBACK_PATH,
        KwebblAuthError,
        base_url,
        client_credentials,
        connect_url,
        new_connect_link_token,
    )

    settings = settings_or_exit()
    try:
        client_credentials(settings)
    except KwebblAuthError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{connect_url(settings)}?k={new_connect_link_token()}")
    click.echo(
        "Open it within 30 minutes and sign in to Kwebbl as an admin user. Kwebbl must know "
        f"{base_url(settings)}{CALLBACK_PATH} as the application's redirect URL.",
        err=True,
    )
    if not settings.public_base_url.strip():
        click.echo(
            "PUBLIC_BASE_URL is not set: the link uses a local address; set it to this "
            "server's public HTTPS address.",
            err=True,
        )


@kwebbl.command("status")
def status() -> None:
    """Whether callhook can use Kwebbl; exits 1 when an administrator must act."""
    from worker.telephony.kwebbl_oauth import connect_url, connection_status

    settings = settings_or_exit()
    state = connection_status()
    if state.state == "not_connected":
        click.echo("Kwebbl: not connected")
        click.echo(f"  connect it at {connect_url(settings)} (`callhook kwebbl connect-link`)")
        raise SystemExit(1)
    click.echo(f"Kwebbl: {state.state}")
    if state.reason:
        click.echo(f"  reason: {state.reason}")
    click.echo(f"  access token expires: {_when(state.expires_at)} (renewed automatically)")
    click.echo(f"  scopes: {state.scope or '-'}")
    click.echo(f"  last change: {_when(state.updated_at)}")
    if state.state != "connected":
        click.echo(
            f"  connect Kwebbl again at {connect_url(settings)} (`callhook kwebbl connect-link`)"
        )
        raise SystemExit(1)


def _secret_envs(settings: Settings) -> list[str]:
    """The variables holding Kwebbl's webhook secret, as its mapping names them."""
    mapping = mappings_or_exit(settings).platforms.get("kwebbl")
    if mapping is None:
        raise click.ClickException(f"no kwebbl mapping in {settings.mappings_dir}")
    return list(mapping.auth.secret_envs)


def _api(settings: Settings) -> Any:
    from worker.telephony.kwebbl_subscriptions import KwebblSubscriptions

    return KwebblSubscriptions(secret_envs=_secret_envs(settings))


def _failed(exc: Exception) -> click.ClickException:
    return click.ClickException(getattr(exc, "message", str(exc)))


@kwebbl.command("subscribe")
def subscribe() -> None:
    """Subscribe callhook to every Kwebbl call event (mode detailed)."""
    from worker.telephony.kwebbl_oauth import KwebblAuthError
    from worker.telephony.kwebbl_subscriptions import SubscriptionError, callback_url, masked

    settings = settings_or_exit()
    try:
        url = callback_url(_secret_envs(settings), settings)
        with _api(settings) as api:
            same = [s for s in api.list_all() if s.callback_url == url]
            if same:
                click.echo(f"already subscribed: {same[0].id} → {masked(url)}")
                return
            created = api.create(url)
    except (SubscriptionError, KwebblAuthError) as exc:
        raise _failed(exc) from None
    click.echo(f"subscribed: {created.id or '(Kwebbl returned no id)'} → {masked(url)}")
    click.echo(f"  event types: {', '.join(created.event_types)}; mode: {created.mode}")


@kwebbl.command("subscriptions")
def subscriptions() -> None:
    """List Kwebbl's subscriptions (callback URLs shown with the token masked)."""
    from worker.telephony.kwebbl_oauth import KwebblAuthError
    from worker.telephony.kwebbl_subscriptions import SubscriptionError, callback_url, masked

    settings = settings_or_exit()
    try:
        ours = callback_url(_secret_envs(settings), settings)
    except SubscriptionError:
        ours = None
    try:
        with _api(settings) as api:
            found = api.list_all()
    except (SubscriptionError, KwebblAuthError) as exc:
        raise _failed(exc) from None
    if not found:
        click.echo("no subscriptions: `callhook kwebbl subscribe` creates callhook's")
        return
    for s in found:
        mark = "  (this callhook, current secret)" if ours and s.callback_url == ours else ""
        click.echo(
            f"{s.id}  events={','.join(s.event_types) or '-'}  mode={s.mode}  "
            f"callback={masked(s.callback_url)}{mark}"
        )


@kwebbl.command("unsubscribe")
@click.argument("subscription_id")
def unsubscribe(subscription_id: str) -> None:
    """Cancel the subscription SUBSCRIPTION_ID (Kwebbl cannot modify one: cancel, subscribe)."""
    from worker.telephony.kwebbl_oauth import KwebblAuthError
    from worker.telephony.kwebbl_subscriptions import SubscriptionError

    settings = settings_or_exit()
    try:
        with _api(settings) as api:
            api.cancel(subscription_id)
    except (SubscriptionError, KwebblAuthError) as exc:
        raise _failed(exc) from None
    click.echo(f"cancelled: {subscription_id}")
