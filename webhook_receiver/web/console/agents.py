"""Console pages: agents, their links, and finding new ones on the platforms.

``/admin/agents`` lists everyone in agents.yaml as this process loaded it: their ids per
platform, their HubSpot owner, whether their page is open, their links and their last
screen-pops. The owner comes from one cached listing of HubSpot's owners
(``worker.reports.agent_discovery.hubspot_owners``), never one request per agent. An operator can
issue a link (shown once, on the answer to the POST, never stored in a cookie or a flash
message) and revoke an agent's links, as ``callhook agents link|revoke`` do.

``/admin/agents/discover`` runs ``callhook agents discover``'s discovery and shows the
proposed agents.yaml additions as a diff to copy. Nothing here writes agents.yaml.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlmodel import col, select

# The presence key is agent_page's (one place for its format); the count is read here, for
# every agent in one pipeline, as `agent_page.open_pages` reads it for one.
from webhook_receiver.web.agent_streams import presence_key
from webhook_receiver.web.operator_auth import operator_required, signed_in_operator
from worker.core.agent_links import AGENT, create_link, lifetime
from worker.core.agent_links import revoke as revoke_links
from worker.core.agents import Agent, AgentDirectory
from worker.core.db import session_scope
from worker.core.models import AgentLink, CallPop, utcnow
from worker.core.redis_conn import connect
from worker.core.settings import get_settings
from worker.reports.agent_discovery import Owners, agents_file, hubspot_owners
from worker.reports.agent_discovery import discover as run_discovery

bp = Blueprint("console_agents", __name__, url_prefix="/admin")
log = logging.getLogger("callhook.console")

RECENT_POPS = 5
# The page waits at most this long per HubSpot request; the answer is cached anyway.
OWNER_TIMEOUT_S = 5.0


@dataclass
class AgentRow:
    """What the page shows of one agent."""

    agent: Agent
    identities: list[tuple[str, str]]
    dial: str
    owner: str
    owner_state: str  # ok | bad | warn: the badge's class
    open_pages: int | None
    links_active: int = 0
    latest_expiry: datetime | None = None
    pops: list[dict[str, Any]] = field(default_factory=list)


def _directory() -> AgentDirectory:
    return current_app.extensions["callhook.mappings"].agents


def _owner(agent: Agent, owners: Owners) -> tuple[str, str]:
    """The agent's HubSpot owner in words, and the badge class that goes with them."""
    if owners.dry_run:
        return "dry run: HubSpot is not asked", "warn"
    if owners.problem:
        return owners.problem, "bad"
    if agent.hubspot_owner_id:
        owner = owners.by_id(agent.hubspot_owner_id)
        if owner is None:
            return (f"owner id {agent.hubspot_owner_id} (set in agents.yaml) is not among "
                    "HubSpot's owners"), "bad"  # fmt: skip
        return f"{owner.name or owner.email} · id {owner.id} (set in agents.yaml)", "ok"
    owner = owners.by_email(agent.email)
    if owner is None:
        cut = " (HubSpot's list was cut short)" if owners.truncated else ""
        return "no HubSpot owner with this email" + cut, "bad"
    return f"{owner.name or owner.email} · id {owner.id}", "ok"


def _links(rows: list[AgentRow]) -> None:
    """Each agent's live links (neither revoked nor expired) and the latest expiry, one query."""
    by_email = {row.agent.email.lower(): row for row in rows}
    if not by_email:
        return
    now = utcnow()
    with session_scope() as session:
        links = session.exec(
            select(AgentLink).where(
                AgentLink.role == AGENT,
                col(AgentLink.revoked_at).is_(None),
                col(AgentLink.email).in_(list(by_email)),
            )
        ).all()
        for link in links:
            expires = link.expires_at or (link.created_at + lifetime(AGENT))
            row = by_email.get(link.email.lower())
            if row is None or expires <= now:
                continue
            row.links_active += 1
            if row.latest_expiry is None or expires > row.latest_expiry:
                row.latest_expiry = expires


def _pops(rows: list[AgentRow]) -> None:
    """Each agent's last screen-pops (one small query per agent: agents are few)."""
    with session_scope() as session:
        for row in rows:
            found = session.exec(
                select(CallPop)
                .where(CallPop.agent_email == row.agent.email.lower())
                .order_by(col(CallPop.shown_at).desc(), col(CallPop.id).desc())
                .limit(RECENT_POPS)
            ).all()
            row.pops = [
                {"call_id": p.call_id, "shown_at": p.shown_at, "contact": p.contact_name}
                for p in found
            ]


def _rows() -> tuple[list[AgentRow], Owners]:
    settings = get_settings()
    owners = hubspot_owners(settings, timeout_s=OWNER_TIMEOUT_S)
    listed = list(_directory().agents)
    pages = _open_pages([agent.email for agent in listed])
    rows = []
    for agent, open_now in zip(listed, pages, strict=True):
        owner, state = _owner(agent, owners)
        identities = [(p, ", ".join(str(i) for i in ids)) for p, ids in agent.extensions.items()]
        dial = f"{agent.dial.platform} {agent.dial.id}" if agent.dial else ""
        rows.append(AgentRow(agent, identities, dial, owner, state, open_now))
    _links(rows)
    _pops(rows)
    return rows, owners


def _page(new_link: dict[str, str] | None = None) -> Response:
    rows, owners = _rows()
    html = render_template(
        "console/agents.html",
        rows=rows,
        owners=owners,
        new_link=new_link,
        agents_file=agents_file(get_settings().mappings_dir).name,
    )
    response = make_response(html)
    # A page holding a new link must stay out of every cache and the browser's disk.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/agents")
@operator_required
def agents() -> Response:
    """Every agent of agents.yaml with their ids, owner, page, links and recent pops."""
    return _page()


def _listed_email() -> str | None:
    email = (request.form.get("email") or "").strip()[:320]
    agent = _directory().by_email(email) if email else None
    return agent.email if agent else None


@bp.post("/agents/link")
@operator_required
def link() -> Any:
    """A new personal link for a listed agent, shown once on the answer to this POST."""
    email = _listed_email()
    if email is None:
        flash("Only an agent listed in agents.yaml can get a link.", "error")
        return redirect(url_for("console_agents.agents"), 303)
    settings = get_settings()
    base = settings.public_base_url.rstrip("/") or request.host_url.rstrip("/")
    url = f"{base}/agent?k={create_link(email)}"
    operator = signed_in_operator()
    log.info(
        "console.agent_link_issued agent=%s operator=%s", email, operator.email if operator else ""
    )
    return _page({"email": email, "url": url})


@bp.post("/agents/revoke")
@operator_required
def revoke() -> Any:
    """Revoke every link of an agent: open pages stop at their next reconnect."""
    email = (request.form.get("email") or "").strip()[:320].lower()
    if not email:
        flash("Say whose links to revoke.", "error")
        return redirect(url_for("console_agents.agents"), 303)
    count = revoke_links(email)
    operator = signed_in_operator()
    log.info("console.agent_links_revoked agent=%s count=%d operator=%s", email, count,
             operator.email if operator else "")  # fmt: skip
    flash(f"Revoked {count} link{'s' if count != 1 else ''} of {email}.", "ok")
    return redirect(url_for("console_agents.agents"), 303)


@bp.get("/agents/discover")
@operator_required
def discover() -> Response:
    """Each platform's users matched to HubSpot owners, and the agents.yaml diff to copy."""
    result = run_discovery(get_settings())
    response = make_response(render_template("console/discover.html", result=result))
    response.headers["Cache-Control"] = "no-store"
    return response


def _open_pages(emails: list[str]) -> list[int | None]:
    """Each agent's open agent pages on every web process, in one round trip to Redis
    (a page of many agents must not cost one each); None for all when Redis cannot say."""
    if not emails:
        return []
    try:
        pipe = connect().pipeline(transaction=False)
        now = time.time()
        for email in emails:
            pipe.zcount(presence_key(email), now, "+inf")
        return [int(count) for count in pipe.execute()]
    except redis.RedisError:
        return [None] * len(emails)
