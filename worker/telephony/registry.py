"""Which platform client places an agent's click-to-call, built from the environment.

A platform's API is enabled by setting its credentials (README, "Click-to-call"); an
agent dials through `dial` in agents.yaml, or else through the first platform of their
`extensions` whose API is enabled.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from worker.core.agents import Agent
from worker.core.settings import Settings
from worker.telephony.base import ClickToCall, ClickToCallError
from worker.telephony.kavkom import KavkomClickToCall
from worker.telephony.kazoo import KazooClickToCall
from worker.telephony.kwebbl import KwebblClickToCall
from worker.telephony.uis import UisClickToCall


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def _kavkom(s: Settings) -> ClickToCall | None:
    if not (_secret(s.kavkom_api_token) and s.kavkom_domain_uuid):
        return None
    return KavkomClickToCall(
        api_token=_secret(s.kavkom_api_token),
        domain_uuid=s.kavkom_domain_uuid,
        base_url=s.kavkom_api_base_url,
    )


def _kwebbl(s: Settings) -> ClickToCall | None:
    # Imported here: the OAuth store needs the database, the other builders do not.
    from worker.telephony import kwebbl_oauth

    oauth = kwebbl_oauth.credential_status()
    static = _secret(s.kwebbl_access_token)
    # An account connected through /connect/kwebbl wins over a static KWEBBL_ACCESS_TOKEN;
    # one refused since, with no static token, still answers: "connect Kwebbl again at ...".
    if oauth == kwebbl_oauth.CONNECTED or (oauth is not None and not static):
        return KwebblClickToCall(
            token_provider=kwebbl_oauth.OAuthTokens(), base_url=s.kwebbl_api_base_url
        )
    if not static:
        return None
    return KwebblClickToCall(
        token_provider=lambda force_refresh=False: static, base_url=s.kwebbl_api_base_url
    )


def _kazoo(s: Settings) -> ClickToCall | None:
    if not (s.kazoo_api_url and s.kazoo_account_id):
        return None
    return KazooClickToCall(
        base_url=s.kazoo_api_url,
        account_id=s.kazoo_account_id,
        auth_token=_secret(s.kazoo_auth_token),
    )


def _uis(s: Settings) -> ClickToCall | None:
    if not (_secret(s.uis_access_token) and s.uis_virtual_phone_number):
        return None
    return UisClickToCall(
        access_token=_secret(s.uis_access_token),
        virtual_phone_number=s.uis_virtual_phone_number,
        base_url=s.uis_call_api_url,
    )


BUILDERS: dict[str, Callable[[Settings], ClickToCall | None]] = {
    "kavkom": _kavkom,
    "kwebbl": _kwebbl,
    "kazoo": _kazoo,
    "uis": _uis,
}


def click_to_call_for(agent: Agent, settings: Settings) -> tuple[str, ClickToCall, str]:
    """(platform, client, the agent's id there), or ClickToCallError saying what is missing."""
    if agent.dial is not None:
        build = BUILDERS.get(agent.dial.platform)
        client = build(settings) if build else None
        if client is None:
            raise ClickToCallError(
                f"click-to-call through {agent.dial.platform} is not set up on the server",
                code="not_configured",
            )
        return agent.dial.platform, client, agent.dial.id
    for platform, idents in agent.extensions.items():
        build = BUILDERS.get(platform)
        if platform == "kazoo" or build is None or not idents:
            continue  # KAZOO dials through an endpoint id, never an owner id: `dial` only
        client = build(settings)
        if client is not None:
            return platform, client, str(idents[0])
    raise ClickToCallError(
        "click-to-call is not set up for you: ask your admin to add `dial` in agents.yaml",
        code="not_configured",
    )
