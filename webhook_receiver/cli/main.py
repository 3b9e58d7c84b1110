"""The ``callhook`` command: run the service, migrate, check mappings, inspect and replay.

Every command also hangs under ``flask --app webhook_receiver.web`` (e.g.
``flask --app webhook_receiver.web mappings check``). They build only what they need,
so ``mappings check`` still answers when a mapping file is broken.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from sqlmodel import Session, col, select

from webhook_receiver.cli.agents_discover import discover_command
from webhook_receiver.cli.dials import dials
from webhook_receiver.cli.kwebbl import kwebbl
from webhook_receiver.cli.platforms import kazoo, listen, uis
from webhook_receiver.cli.support import mappings_or_exit, settings_or_exit
from worker.core.settings import ConfigError


@click.group()
def cli() -> None:
    """callhook: telephony webhooks in, one CRM call record per call out."""


# -- serve ----------------------------------------------------------------------
@cli.command()
@click.option("--port", type=int, default=None, help="HTTP port (default: $PORT or 5000).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (0.0.0.0: every interface, reachable from other machines).",
)
@click.option("--concurrency", type=int, default=2, show_default=True, help="Worker processes.")
def serve(port: int | None, host: str, concurrency: int) -> None:
    """Run everything on this machine: Redis (embedded if REDIS_URL is unset), web, worker.

    For development and trials; production runs the Procfile's processes instead. It
    listens on 127.0.0.1 only unless --host says otherwise, and prints an operator
    sign-in link (the dry-run page needs one).
    """
    from webhook_receiver.mapping import load_mappings
    from worker.core.migrate import upgrade
    from worker.core.redis_conn import start_embedded_redis

    settings = settings_or_exit()
    redis_pid = None
    try:
        load_mappings(settings.mappings_dir)
        url = settings.redis_url
        if not url:
            url, redis_pid = start_embedded_redis(settings.instance_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    upgrade()
    env = {
        **os.environ,
        "REDIS_URL": url,
        "PORT": str(port or settings.port),
        "PYTHONUNBUFFERED": "1",
    }
    schedule = Path(settings.instance_dir).resolve() / "celerybeat-schedule"
    commands = [
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.tasks.celery_worker",
            "worker",
            "--beat",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "--schedule",
            str(schedule),
        ],
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:webhook_receiver.web.gunicorn_conf",
            "--bind",
            f"{host}:{env['PORT']}",
            "webhook_receiver.web:create_app()",
        ],
    ]
    procs = [subprocess.Popen(cmd, env=env) for cmd in commands]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{env['PORT']}"
    click.echo(f"callhook: listening on {host}:{env['PORT']} (Ctrl-C stops)")
    click.echo(f"callhook: operator sign-in for this machine: {_operator_link(base)}")
    if settings.dry_run:
        click.echo(f"callhook: dry run; once signed in, see {base}/dry-run")
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    if redis_pid is not None:  # we started it, we stop it (it saves its data on SIGTERM)
        os.kill(redis_pid, signal.SIGTERM)
    failed = [p for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
    if failed and not stopping:
        raise click.ClickException("a process exited; see its output above")


def _operator_link(base: str, email: str = "operator@localhost") -> str:
    from worker.core.agent_links import OPERATOR, create_link

    return f"{base}/admin/signin?t={create_link(email, OPERATOR)}"


def _public_base(settings: Any) -> str:
    return settings.public_base_url.rstrip("/") or f"http://127.0.0.1:{settings.port}"


# -- secret -----------------------------------------------------------------------
@cli.command()
def secret() -> None:
    """Print a new random SECRET_KEY (set it once, the same for every process)."""
    import secrets

    click.echo(secrets.token_urlsafe(48))


# -- admin ------------------------------------------------------------------------
@cli.group()
def admin() -> None:
    """Operators' sign-in links to the operator pages (dry run, console)."""


@admin.command("link")
@click.argument("email")
def admin_link(email: str) -> None:
    """Print a sign-in link for the operator EMAIL (it expires: OPERATOR_LINK_TTL_HOURS)."""
    settings = settings_or_exit()
    if "@" not in email or len(email) > 320:
        raise click.ClickException(f"{email!r} is not an email address")
    click.echo(_operator_link(_public_base(settings), email))


@admin.command("revoke")
@click.argument("email")
def admin_revoke(email: str) -> None:
    """Revoke every sign-in link of the operator EMAIL (signed out at the next click)."""
    from worker.core.agent_links import OPERATOR, revoke

    settings_or_exit()
    click.echo(f"revoked {revoke(email, OPERATOR)} sign-in link(s) of {email}")


# -- db ---------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (the Procfile's release process)."""
    from worker.core.migrate import upgrade

    settings_or_exit()
    upgrade()
    click.echo("database is up to date")


@db.command("check")
def db_check() -> None:
    """Fail when the models have changes no migration holds."""
    from worker.core.migrate import check

    settings_or_exit()
    check()


# -- mappings -----------------------------------------------------------------------
@cli.group()
def mappings() -> None:
    """Check and try the mapping files."""


@mappings.command("check")
def mappings_check() -> None:
    """Validate every mapping file; each problem names file, key and reason."""
    from webhook_receiver.mapping import load_mappings

    settings = settings_or_exit()
    try:
        files = load_mappings(settings.mappings_dir)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    for path in files.files:
        click.echo(f"ok  {path}")
    click.echo(f"platforms: {', '.join(sorted(files.platforms)) or '(none)'}")


@mappings.command("try")
@click.argument("platform")
@click.argument("payload_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def mappings_try(platform: str, payload_file: Path) -> None:
    """Show the canonical events PAYLOAD_FILE produces, and the HubSpot request (dry run).

    The same as the console's mapping sandbox (webhook_receiver/deliveries/sandbox.py): the file is
    read as a delivery of its format would be (JSON when it opens like JSON, else a form).
    """
    from webhook_receiver.deliveries.sandbox import guess_format, try_payload

    settings = settings_or_exit()
    files = mappings_or_exit(settings)
    raw = payload_file.read_bytes()
    result = try_payload(files, platform, raw, guess_format(raw), settings.default_region)
    if result.error is not None:
        raise click.ClickException(f"{payload_file}: {result.error}")
    click.echo(result.as_text())


@mappings.command("golden")
@click.option("--update", is_flag=True, help="Write the golden files instead of checking them.")
@click.option(
    "--fixtures",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("tests/platforms"),
    show_default=True,
    help="The folder holding <platform>/fixtures/.",
)
@click.option("--platform", default=None, help="Only this platform's fixtures.")
def mappings_golden(update: bool, root: Path, platform: str | None) -> None:
    """Check (or --update) each fixture's golden file: the events its mapping gives.

    After a deliberate change to a mapping file, run with --update and read the diff
    (`git diff tests/platforms`): it shows what the change did to every fixture.
    """
    from webhook_receiver.mapping.golden import check, platform_fixtures

    settings = settings_or_exit()
    files = mappings_or_exit(settings)
    if not root.is_dir():
        raise click.ClickException(f"no fixtures folder {root} (run from the checkout's root)")
    found = [(p, f) for p, f in platform_fixtures(root, files) if platform in (None, p)]
    if not found:
        raise click.ClickException(
            f"no fixtures under {root}" + (f" for {platform}" if platform else "")
        )
    stale = 0
    for name, fixture in found:
        result = check(files, name, fixture)
        if result.ok:
            continue
        stale += 1
        if update:
            result.golden.write_text(result.expected, encoding="utf-8")
            click.echo(f"{'wrote' if result.current is None else 'updated'}  {result.golden}")
        else:
            click.echo(f"{'missing' if result.current is None else 'differs'}  {result.golden}")
    click.echo(
        f"{len(found)} fixture(s), {stale} golden file(s) {'written' if update else 'stale'}"
    )
    if stale and not update:
        raise SystemExit(1)


# -- dry run, calls, events -------------------------------------------------------------
@cli.command("dry-run")
@click.option("--call", "call_id", type=int, default=None, help="Only this call's requests.")
@click.option("--limit", type=int, default=20, show_default=True)
def dry_run(call_id: int | None, limit: int) -> None:
    """Print the requests the dry-run CRM recorded instead of sending (newest first)."""
    from webhook_receiver.web.dry_run_page import recent_requests

    settings_or_exit()
    for row in recent_requests(limit=limit, call_id=call_id):
        click.echo(f"#{row.id} call={row.call_id} {row.at.isoformat()}")
        click.echo(f"{row.method} {row.path}")
        if row.body is not None:
            click.echo(json.dumps(row.body, indent=2, ensure_ascii=False))
        click.echo("")


@cli.group()
def calls() -> None:
    """Calls: their state, CRM record, last error; replay a failed one."""


@calls.command("list")
@click.option("--status", default=None, help="waiting, pending, synced, dry_run or failed.")
@click.option("--limit", type=int, default=50, show_default=True)
def calls_list(status: str | None, limit: int) -> None:
    from worker.core.db import get_engine
    from worker.core.models import Call

    settings_or_exit()
    with Session(get_engine()) as session:
        stmt = (
            select(Call)
            .where(col(Call.merged_into).is_(None))
            .order_by(col(Call.id).desc())
            .limit(limit)
        )
        if status:
            stmt = stmt.where(Call.crm_status == status)
        rows = session.exec(stmt).all()
        if not rows:
            click.echo("no calls" + (f" with status {status}" if status else ""))
            return
        click.echo(
            f"{'ID':>6} {'PLATFORM':<10} {'CALL ID':<38} {'STAGE':<8} {'DIRECTION':<9} "
            f"{'NUMBER':<16} {'OUTCOME':<9} {'CRM':<8} CRM RECORD, CONTACT, OWNER"
        )
        for c in rows:
            click.echo(
                f"{c.id:>6} {c.platform:<10} {c.platform_call_id:<38} {c.stage:<8} "
                f"{c.direction or '-':<9} {c.external_number or c.external_number_raw or '-':<16} "
                f"{c.outcome or '-':<9} {c.crm_status:<8} crm={c.crm_id or '-'} "
                f"contact={c.crm_contact_id or '-'} owner={c.crm_owner_id or '-'}"
                + (f"\n       note: {c.crm_contact_note}" if c.crm_contact_note else "")
                + (f"\n       error: {c.crm_error}" if c.crm_error else "")
            )


@calls.command("replay")
@click.argument("call_id", type=int)
def calls_replay(call_id: int) -> None:
    """Sync one call to the CRM again (after fixing what made it fail)."""
    from worker.tasks.call_retry import retry_call

    settings_or_exit()
    try:
        click.echo(retry_call(call_id))
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def events() -> None:
    """Received webhooks: list them, replay unmapped or failed ones."""


@events.command("list")
@click.option("--status", default=None, help="pending, processed, ignored, unmapped or failed.")
@click.option("--limit", type=int, default=50, show_default=True)
def events_list(status: str | None, limit: int) -> None:
    from worker.core.db import get_engine
    from worker.core.models import WebhookEvent

    settings_or_exit()
    with Session(get_engine()) as session:
        stmt = select(WebhookEvent).order_by(col(WebhookEvent.id).desc()).limit(limit)
        if status:
            stmt = stmt.where(WebhookEvent.status == status)
        for e in session.exec(stmt):
            click.echo(
                f"{e.id:>6} {e.received_at.isoformat()} {e.platform:<10} {e.status:<9} "
                + (e.error or "")
            )


@events.command("replay")
@click.argument("event_id", type=int)
def events_replay(event_id: int) -> None:
    """Map a stored event again with the current mapping file, then process it."""
    from webhook_receiver.deliveries.replay import replay_event

    settings_or_exit()
    try:
        click.echo(replay_event(event_id))
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def agents() -> None:
    """Agents' personal links to the screen-pop page."""


@agents.command("link")
@click.argument("email")
def agents_link(email: str) -> None:
    """Print a new personal link to EMAIL's agent page (send it to the agent)."""
    from worker.core.agent_links import create_link

    settings = settings_or_exit()
    directory = mappings_or_exit(settings).agents
    if directory.by_email(email) is None:
        raise click.ClickException(f"{email} is not in agents.yaml; add the agent there first")
    click.echo(f"{_public_base(settings)}/agent?k={create_link(email)}")


@agents.command("revoke")
@click.argument("email")
def agents_revoke(email: str) -> None:
    """Revoke every link of EMAIL (open pages stop at their next reconnect)."""
    from worker.core.agent_links import revoke

    settings_or_exit()
    click.echo(f"revoked {revoke(email)} link(s) of {email}")


agents.add_command(discover_command)
cli.add_command(kwebbl)
cli.add_command(dials)
cli.add_command(listen)
cli.add_command(kazoo)
cli.add_command(uis)


def register_commands(group: click.Group) -> None:
    """Hang the commands under ``flask --app webhook_receiver.web`` too."""
    for command in cli.commands.values():
        if command.name != "serve":
            group.add_command(command)


def main() -> None:
    cli(prog_name="callhook")
