"""Agents' personal links: a signed token names a link row, which can be revoked.

No passwords: an admin prints a link for an agent (``callhook agents link EMAIL``) and
sends it to them. The token is signed with SECRET_KEY (a forged one is refused) and
names a row in ``agent_links`` (revoking the row kills the link without rotating the key).
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import select

from worker.db import session_scope
from worker.models import AgentLink, utcnow
from worker.settings import get_settings

SALT = "callhook-agent-link"


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(get_settings().signing_key(), salt=SALT)


def create_link(email: str) -> str:
    """A new token for `email` (earlier links stay valid until revoked)."""
    with session_scope() as session:
        link = AgentLink(email=email.lower())
        session.add(link)
        session.flush()
        assert link.id is not None
        return str(_serializer().dumps({"l": link.id}))


def email_for(token: str) -> str | None:
    """The agent a token belongs to, or None when forged, unknown or revoked."""
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("l"), int):
        return None
    with session_scope() as session:
        link = session.get(AgentLink, data["l"])
        if link is None or link.revoked_at is not None:
            return None
        return link.email


def revoke(email: str) -> int:
    """Revoke every live link of `email`; returns how many."""
    with session_scope() as session:
        links = session.exec(
            select(AgentLink).where(
                AgentLink.email == email.lower(),
                AgentLink.revoked_at.is_(None),  # type: ignore[union-attr]
            )
        ).all()
        for link in links:
            link.revoked_at = utcnow()
            session.add(link)
        return len(links)
