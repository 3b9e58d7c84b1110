"""``callhook dials``: every click-to-call an agent asked for, placed or refused.

The operator's view of ``dial_attempts`` (see ``worker.telephony.dialing``): what each personal
link was used for. Refused numbers (premium rate, satellite, another country) and rate
limits reached are the signs of a leaked link being tried; revoke it with
``callhook agents revoke EMAIL``.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from sqlmodel import Session, col, select

from webhook_receiver.cli.support import settings_or_exit
from worker.telephony.dialing import RESULTS

# (header, width) of each column but the last (REASON), in the order printed.
COLUMNS = (
    ("ID", 6),
    ("AT (UTC)", 19),
    ("AGENT", 28),
    ("RESULT", 12),
    ("REQUESTED", 20),
    ("DESTINATION", 16),
    ("PLATFORM", 8),
    ("CALL ID", 20),
)


def _cell(value: object, width: int) -> str:
    text = " ".join(str(value if value not in (None, "") else "-").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(cells: Sequence[object]) -> str:
    parts = [_cell(c, w).ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=False)]
    return " ".join([*parts, str(cells[-1])]).rstrip()


@click.group()
def dials() -> None:
    """Click-to-call attempts: who dialled what, and what callhook or the platform said."""


@dials.command("list")
@click.option("--agent", "agent_email", default=None, help="Only this agent's (email).")
@click.option(
    "--result",
    type=click.Choice(RESULTS),
    default=None,
    help="Only this result.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def dials_list(agent_email: str | None, result: str | None, limit: int) -> None:
    """List dial attempts, newest first."""
    from worker.core.db import get_engine
    from worker.core.models import DialAttempt

    settings_or_exit()
    stmt = select(DialAttempt).order_by(col(DialAttempt.id).desc()).limit(limit)
    if agent_email:
        stmt = stmt.where(DialAttempt.agent_email == agent_email.strip().lower())
    if result:
        stmt = stmt.where(DialAttempt.result == result)
    with Session(get_engine()) as session:
        rows = session.exec(stmt).all()
    click.echo(_line([name for name, _ in COLUMNS] + ["REASON"]))
    for row in rows:
        cells: list[object] = [row.id, row.at.strftime("%Y-%m-%d %H:%M:%S"), row.agent_email]
        cells += [row.result, row.requested, row.destination, row.platform]
        cells += [row.platform_call_id, " ".join((row.reason or "").split())]
        click.echo(_line(cells))
    if not rows:
        click.echo("(no dial attempts)", err=True)
