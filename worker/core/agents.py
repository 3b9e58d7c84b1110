"""The agent directory (``mappings/agents.yaml``): who sits behind an extension.

Platforms name agents by extension, presence id or user id; the CRM names them by
email and owner id. This file is the bridge, edited by the team's admin.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator


class Dial(BaseModel):
    """Which platform places this agent's click-to-call, and the agent's id there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: str
    # Kavkom extension, Kwebbl extension id or number, KAZOO click-to-call endpoint id
    # (each KAZOO endpoint rings one fixed extension), UIS employee id.
    id: str


class Agent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: EmailStr
    name: str | None = None
    # Skip the owners-API lookup by email when the owner id is known.
    hubspot_owner_id: str | None = None
    # platform → the identifiers that platform uses for this agent (extensions, user ids).
    extensions: dict[str, list[str]] = Field(default_factory=dict)
    # Open the caller's CRM record by itself when a call rings (the agent can change it).
    auto_open: bool = False
    # Click-to-call; default: the first platform of `extensions` whose API is configured,
    # with the agent's first identifier there (KAZOO needs `dial`: its endpoint id).
    dial: Dial | None = None


class AgentDirectory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["agents"]
    agents: list[Agent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_extensions(self) -> AgentDirectory:
        seen: dict[tuple[str, str], str] = {}
        for agent in self.agents:
            for platform, idents in agent.extensions.items():
                for ident in idents:
                    key = (platform, str(ident))
                    if key in seen and seen[key] != agent.email:
                        raise ValueError(
                            f"{platform} extension {ident} belongs to both {seen[key]} "
                            f"and {agent.email}"
                        )
                    seen[key] = agent.email
        return self

    def by_email(self, email: str) -> Agent | None:
        return next((a for a in self.agents if a.email.lower() == email.lower()), None)

    def find(self, platform: str, ident: str | None) -> Agent | None:
        """The agent a platform's extension / user id belongs to, if listed."""
        if not ident:
            return None
        for agent in self.agents:
            if str(ident) in {str(i) for i in agent.extensions.get(platform, [])}:
                return agent
        return None
