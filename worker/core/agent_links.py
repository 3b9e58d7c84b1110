"""Personal links: a signed token names a link row, which expires and can be revoked.

No passwords: an admin prints a link (``callhook agents link EMAIL`` for an agent's page,
``callhook admin link EMAIL`` for the operator pages) and sends it. The token is signed
with SECRET_KEY (a forged one is refused) and names a row in ``agent_links``; the row
holds the link's role, its expiry and its revocation, so killing a link needs no key
rotation. A leaked link is therefore bounded in time (``AGENT_LINK_TTL_DAYS``,
``OPERATOR_LINK_TTL_HOURS``) and in reach (its role), and an agent page in daily use
renews its own link before it expires (`renew`), so expiry never breaks an open page.

itsdangerous (Flask's own signing library) signs; the rows add what a signature alone
cannot: revocation and a per-role lifetime that an operator can shorten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import col, select

from worker.core.db import session_scope
from worker.core.models import AgentLink, utcnow
from worker.core.settings import get_settings

SALT = "callhook-agent-link"
AGENT = "agent"
OPERATOR = "operator"
ROLES = (AGENT, OPERATOR)
# Tokens are short (a signed row id); anything longer is refused before any work.
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class LinkHolder:
    """Who a valid token belongs to, and until when it holds."""

    link_id: int
    email: str
    role: str
    expires_at: datetime


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(get_settings().signing_key(), salt=SALT)


def lifetime(role: str) -> timedelta:
    settings = get_settings()
    if role == OPERATOR:
        return timedelta(hours=settings.operator_link_ttl_hours)
    return timedelta(days=settings.agent_link_ttl_days)


def create_link(email: str, role: str = AGENT) -> str:
    """A new token for `email` in `role` (earlier links stay valid until they expire)."""
    if role not in ROLES:
        raise ValueError(f"unknown link role {role!r}")
    now = utcnow()
    with session_scope() as session:
        link = AgentLink(
            email=email.lower(), role=role, created_at=now, expires_at=now + lifetime(role)
        )
        session.add(link)
        session.flush()
        assert link.id is not None
        return str(_serializer().dumps({"l": link.id}))


def _inspect(token: str, role: str) -> LinkHolder | str:
    """The holder of a token in `role`, or why it is refused, in words its holder can act on."""
    ask = "ask your admin for a new link"
    invalid = f"this {role} link is invalid (incomplete or altered); {ask}"
    if not token or len(token) > MAX_TOKEN_CHARS:
        return invalid
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return invalid
    if not isinstance(data, dict) or type(data.get("l")) is not int:
        return invalid
    with session_scope() as session:
        link = session.get(AgentLink, data["l"])
        if link is None:
            return invalid
        if link.role != role:
            return f"this is an {link.role} link, not an {role} link; {ask}"
        if link.revoked_at is not None:
            return f"this {role} link was revoked; {ask}"
        expires = link.expires_at or (link.created_at + lifetime(role))
        if expires <= utcnow():
            return f"this {role} link expired on {expires:%Y-%m-%d %H:%M} UTC; {ask}"
        assert link.id is not None
        return LinkHolder(link.id, link.email, link.role, expires)


def holder(token: str, role: str = AGENT) -> LinkHolder | None:
    """The holder of a token in `role`, or None when forged, unknown, expired or revoked."""
    found = _inspect(token, role)
    return found if isinstance(found, LinkHolder) else None


def refusal(token: str, role: str = AGENT) -> str | None:
    """Why a token is refused (invalid, revoked, expired: each says to ask for a new link),
    or None when it is valid. Pages show it as is, so an agent knows what to do."""
    found = _inspect(token, role)
    return None if isinstance(found, LinkHolder) else found


def renew(token: str, role: str = AGENT) -> tuple[str, LinkHolder] | None:
    """A fresh token for the holder of a valid one, once half its lifetime has passed.

    The old token stays valid until its own expiry (another tab may still hold it), so a
    page that swaps tokens never loses its stream. Returns None for an invalid token;
    the same token when it is still young (no row is written for every page load).
    """
    found = holder(token, role)
    if found is None:
        return None
    if found.expires_at - utcnow() > lifetime(role) / 2:
        return token, found
    fresh = create_link(found.email, role)
    renewed = holder(fresh, role)
    assert renewed is not None
    return fresh, renewed


def renewable_in(found: LinkHolder) -> timedelta:
    """How long until `renew` gives the holder of this token a fresh one (zero: now).

    A page asks again after this long (and at least daily), so it renews its link soon
    after half its lifetime, far from its expiry, whatever lifetime the operator set.
    """
    return max(timedelta(0), found.expires_at - lifetime(found.role) / 2 - utcnow())


def revoke(email: str, role: str = AGENT) -> int:
    """Revoke every live link of `email` in `role`; returns how many."""
    with session_scope() as session:
        links = session.exec(
            select(AgentLink).where(
                AgentLink.email == email.lower(),
                AgentLink.role == role,
                col(AgentLink.revoked_at).is_(None),
            )
        ).all()
        for link in links:
            link.revoked_at = utcnow()
            session.add(link)
        return len(links)
