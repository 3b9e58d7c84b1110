"""The canonical call event: what every mapping produces and every task consumes.

Platforms disagree on vocabulary (Kavkom ``active``, Kwebbl ``answered``, KAZOO
``CHANNEL_ANSWER``); mappings translate into this one small model so that the
worker never knows which platform it is folding.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator


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


# Bounds on what an event may carry, checked when a mapping builds it (a value past one
# is refused with the reason, and the delivery kept as `unmapped`) and again when the worker
# reads it back. Text bounds are those of the `calls` columns the fold writes (worker.core.models):
# past them PostgreSQL refuses the row, and the event could never be folded.
MAX_ID_CHARS = 200  # calls.platform_call_id
MAX_TEXT_CHARS = 200  # calls.agent, company_number, external_number_raw, hangup_cause
MAX_E164_CHARS = 32  # calls.external_number
MAX_LINKED_LEGS = 50
# A month: no call lasts longer, and the figure stays far inside a 32-bit INTEGER column
# (HubSpot's duration, in milliseconds, too) and inside any date arithmetic on it.
MAX_DURATION_S = 31 * 24 * 3600
# Times a call can have happened at. Outside them a date is a platform's placeholder or
# garbage, and arithmetic on it (ended_at - duration) could leave datetime's range.
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _plausible(value: datetime | None) -> datetime | None:
    if value is not None and not EARLIEST <= value < LATEST:
        raise ValueError(
            f"{value.isoformat()} is outside {EARLIEST.year}-{LATEST.year - 1}: not a call's time"
        )
    return value


CallTime = Annotated[AwareDatetime | None, AfterValidator(_plausible)]
Duration = Annotated[int | None, Field(ge=0, le=MAX_DURATION_S)]
Text = Annotated[str | None, Field(max_length=MAX_TEXT_CHARS)]


class CallEvent(BaseModel):
    """One thing that happened to one call leg, in callhook's words."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    platform: str = Field(min_length=1, max_length=64)
    call_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    stage: Stage
    # Set on a leg of a larger call: the event folds into that call (see worker.core.fold).
    parent_call_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    linked_call_ids: list[Annotated[str, Field(max_length=MAX_ID_CHARS)]] = Field(
        default_factory=list, max_length=MAX_LINKED_LEGS
    )
    direction: Direction | None = None
    # E.164 when the number is a real phone number; the raw text is kept beside it.
    external_number: str | None = Field(default=None, max_length=MAX_E164_CHARS)
    external_number_raw: Text = None
    # The number the customer dialled or was called from (a company DID).
    company_number: Text = None
    agent: Text = None
    occurred_at: CallTime = None
    started_at: CallTime = None
    answered_at: CallTime = None
    ended_at: CallTime = None
    duration_s: Duration = None
    talk_s: Duration = None
    outcome: Outcome | None = None
    recording_url: str | None = None
    hangup_cause: Text = None
    variables: dict[str, Any] = Field(default_factory=dict)

    @field_validator(
        "platform", "call_id", "parent_call_id", "linked_call_ids", "external_number",
        "external_number_raw", "company_number", "agent", "recording_url", "hangup_cause",
    )  # fmt: skip
    @classmethod
    def _no_nul(cls, value: str | list[str] | None) -> str | list[str] | None:
        # PostgreSQL's text columns cannot hold U+0000: refused here, not by the fold.
        texts = value if isinstance(value, list) else [value]
        if any(text is not None and "\x00" in text for text in texts):
            raise ValueError("contains a NUL character, which no text column can hold")
        return value

    @property
    def rank(self) -> int:
        return STAGE_RANK[self.stage]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallEvent:
        return cls.model_validate(data)
