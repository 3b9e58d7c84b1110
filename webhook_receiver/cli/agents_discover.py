"""``callhook agents discover``: who each platform knows, matched to HubSpot owners.

Prints, per configured platform, the users it lists and what became of each (already in
agents.yaml, new, or unmatched and why), then the proposed additions as a unified diff
against agents.yaml to copy. Nothing is written. A platform that cannot be listed is
reported with its reason and the others still run; the command exits 0 either way, since
what it prints is advice, not a check.
"""

from __future__ import annotations

import click

from webhook_receiver.cli.support import settings_or_exit
from worker.reports.agent_discovery import Discovery, PlatformReport, discover
from worker.telephony.users import PlatformUser


def _who(user: PlatformUser) -> str:
    parts = [user.ident]
    if user.name:
        parts.append(user.name)
    if user.email:
        parts.append(f"<{user.email}>")
    if user.detail:
        parts.append(f"({user.detail})")
    return " ".join(parts)


def _platform(report: PlatformReport) -> list[str]:
    listing = report.listing
    if listing.error:
        return [f"{listing.label}: not listed: {listing.error}"]
    count = len(listing.users)
    lines = [f"{listing.label}: {count} user{'s' if count != 1 else ''}"]
    if listing.truncated:
        lines.append("  (the listing stopped at its page limit: some users are missing)")
    for found in report.new:
        owner = found.owner
        who = f"{owner.name or owner.email} <{owner.email}>"
        lines.append(f"  new      {_who(found.user)} -> {who} (owner {owner.id}, by {found.by})")
    for known in report.known:
        note = f": {known.note}" if known.note else ""
        lines.append(f"  listed   {_who(known.match.user)} -> {known.agent_email}{note}")
    for missing in report.unmatched:
        lines.append(f"  no match {_who(missing.user)}: {missing.reason}")
    return lines


def render(result: Discovery) -> str:
    """The report as text, the diff last so it can be copied whole."""
    lines: list[str] = []
    owners = result.owners
    if owners.problem:
        lines.append(f"HubSpot: {owners.problem}")
    else:
        cut = " (stopped at the page limit: some are missing)" if owners.truncated else ""
        lines.append(f"HubSpot: {len(owners.owners)} owner(s){cut}")
    if not result.platforms:
        lines.append("No platform API is configured: see README, Configuration.")
    for report in result.platforms:
        lines.extend(_platform(report))
    lines.append("")
    if result.problem:
        lines.append(f"agents: {result.problem}")
    if not result.proposed:
        lines.append(f"Nothing to add to {result.agents_file}.")
    elif result.diff:
        lines.append(f"Proposed additions to {result.agents_file} (nothing was written; apply "
                     "them by hand, then restart callhook):")  # fmt: skip
        lines.append(result.diff.rstrip("\n"))
    else:
        lines.append(f"New agents to add under `agents:` in {result.agents_file}:")
        lines.append(result.entries.rstrip("\n"))
    return "\n".join(lines)


@click.command("discover")
def discover_command() -> None:
    """List each platform's users, match them to HubSpot owners, print agents.yaml additions."""
    settings = settings_or_exit()
    click.echo(render(discover(settings)))
