"""The canonical call event: what every mapping produces and every task consumes.

Platforms disagree on vocabulary (Kavkom ``active``, Kwebbl ``answered``, KAZOO
``CHANNEL_ANSWER``); mappings translate into this one small model so that the
worker never knows which platform it is folding.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Stage(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    HELD = "held"
    RESUMED = "resumed"
    TRANSFERRED = "transferred"
    ENDED = "ended"
    CDR = "cdr"


# How far along a call each stage proves it is. A CDR is the platform's final word,
# so its figures beat those of a live ``ended`` event.
STAGE_RANK: dict[Stage, int] = {
    Stage.RINGING: 1,
    Stage.ANSWERED: 2,
    Stage.HELD: 3,
    Stage.RESUMED: 3,
    Stage.TRANSFERRED: 3,
    Stage.ENDED: 4,
    Stage.CDR: 5,
}
FINAL_RANK = STAGE_RANK[Stage.ENDED]


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Outcome(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELED = "canceled"
    VOICEMAIL = "voicemail"


class CallEvent(BaseModel):
    """One thing that happened to one call leg, in callhook's words."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    platform: str
    call_id: str = Field(min_length=1, max_length=200)
    stage: Stage
    # Set on a leg of a larger call: the event folds into that call (see worker.fold).
    parent_call_id: str | None = Field(default=None, min_length=1, max_length=200)
    linked_call_ids: list[str] = Field(default_factory=list)
    direction: Direction | None = None
    # E.164 when the number is a real phone number; the raw text is kept beside it.
    external_number: str | None = None
    external_number_raw: str | None = None
    # The number the customer dialled or was called from (a company DID).
    company_number: str | None = None
    agent: str | None = None
    occurred_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    answered_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    duration_s: int | None = Field(default=None, ge=0)
    talk_s: int | None = Field(default=None, ge=0)
    outcome: Outcome | None = None
    recording_url: str | None = None
    hangup_cause: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)

    @property
    def rank(self) -> int:
        return STAGE_RANK[self.stage]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallEvent:
        return cls.model_validate(data)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
