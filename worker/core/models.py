"""The tables: what was received, what each call became, what was sent to the CRM.

Deduplication is done by unique constraints, never by memory: a webhook delivered
twice hits ``uq_webhook_events_platform`` and a call seen through many events is
one row under ``uq_calls_platform``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

# Stable constraint names, so Alembic migrations are the same on SQLite and Postgres.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, even on SQLite which stores no zone."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: callhook stores aware UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(nullable: bool = True, **kw: Any) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, **kw))


class EventStatus:
    """Lifecycle of a stored webhook (plain strings keep the column portable)."""

    PENDING = "pending"  # mapped, waiting for the worker
    PROCESSED = "processed"  # folded into its call(s)
    IGNORED = "ignored"  # a known event type the mapping says to ignore
    UNMAPPED = "unmapped"  # the mapping could not read it: kept for inspection and replay
    FAILED = "failed"  # the worker could not fold it: kept, replayable


class WebhookEvent(SQLModel, table=True):
    """One received delivery, stored before it is acknowledged."""

    __tablename__ = "webhook_events"
    __table_args__ = (sa.UniqueConstraint("platform", "dedupe_key"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=64, index=True)
    dedupe_key: str = Field(max_length=200)
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    method: str = Field(max_length=8)
    content_type: str = Field(default="", max_length=200)
    body: str = Field(sa_column=Column(sa.Text(), nullable=False))
    # The query string with authentication parameters removed.
    query: str = Field(default="", sa_column=Column(sa.Text(), nullable=False))
    status: str = Field(default=EventStatus.PENDING, max_length=16, index=True)
    error: str | None = Field(default=None, sa_column=Column(sa.Text()))
    canonical: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    enqueued_at: datetime | None = _ts()
    processed_at: datetime | None = _ts()
    # How many times the worker tried to fold it: past a bound it is marked failed (kept,
    # replayable) instead of being retried forever.
    attempts: int = Field(
        default=0, sa_column=Column(sa.Integer(), nullable=False, server_default="0")
    )


class CrmStatus:
    WAITING = "waiting"  # the call has not ended yet
    PENDING = "pending"  # ended, a sync is due
    SYNCED = "synced"
    DRY_RUN = "dry_run"  # recorded what would have been sent
    FAILED = "failed"  # permanent error or retries exhausted: see crm_error, replayable
    MERGED = "merged"  # a leg of another call: that call is synced instead


class Call(SQLModel, table=True):
    """The state of one platform call, folded from all its events in any order."""

    __tablename__ = "calls"
    __table_args__ = (sa.UniqueConstraint("platform", "platform_call_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=64)
    platform_call_id: str = Field(max_length=200)
    stage: str = Field(default="ringing", max_length=16)
    direction: str | None = Field(default=None, max_length=16)
    # Indexed: the operator console finds a caller's calls by number.
    external_number: str | None = Field(default=None, max_length=32, index=True)
    external_number_raw: str | None = Field(default=None, max_length=200)
    company_number: str | None = Field(default=None, max_length=200)
    agent: str | None = Field(default=None, max_length=200)
    # Indexed: the agent page lists a day's calls by time (`worker/reports/agent_calls.py`).
    started_at: datetime | None = _ts(index=True)
    answered_at: datetime | None = _ts()
    ended_at: datetime | None = _ts(index=True)
    duration_s: int | None = None
    talk_s: int | None = None
    outcome: str | None = Field(default=None, max_length=16)
    recording_url: str | None = Field(default=None, sa_column=Column(sa.Text()))
    hangup_cause: str | None = Field(default=None, max_length=200)
    variables: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Which stage last set each field: lets a late, weaker event never overwrite a stronger one.
    field_ranks: dict[str, list[float]] = Field(default_factory=dict, sa_column=Column(JSON))
    ended: bool = False
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )

    # Set when this row turned out to be a leg of another call (a KAZOO B leg, a bridged
    # Kwebbl leg): its events moved there, and its later events follow.
    merged_into: int | None = Field(default=None, foreign_key="calls.id")

    crm_status: str = Field(default=CrmStatus.WAITING, max_length=16, index=True)
    crm_id: str | None = Field(default=None, max_length=64)
    crm_contact_id: str | None = Field(default=None, max_length=64)
    crm_owner_id: str | None = Field(default=None, max_length=64)
    crm_contact_note: str | None = Field(default=None, max_length=500)
    crm_task_id: str | None = Field(default=None, max_length=64)
    crm_synced_hash: str | None = Field(default=None, max_length=64)
    crm_error: str | None = Field(default=None, sa_column=Column(sa.Text()))
    # Set when a create is sent and cleared once its answer is stored: if it is still set at
    # the next sync, HubSpot may hold a record we never heard back about (a lost response,
    # a worker killed mid-request), so the adapter looks for it before creating another.
    crm_create_sent_at: datetime | None = _ts()
    # A lease, not a lock: a worker killed mid-sync lets the next one in when it expires.
    crm_lease_until: datetime | None = _ts()
    crm_lease_owner: str | None = Field(default=None, max_length=64)
    # The name of the contact the call was logged on, for the agent page's lists (which
    # must not ask HubSpot on every load).
    crm_contact_name: str | None = Field(default=None, max_length=200)

    # The agent's wrap-up after the call (the agent page): an outcome among
    # mappings/hubspot.yaml's `call.agent_outcomes` (a HubSpot call outcome id) and a note.
    # Part of what the CRM record is made of (`fold.sync_hash`): saved before the
    # call is logged it goes into the create, after it one update of the same record.
    agent_outcome: str | None = Field(default=None, max_length=64)
    agent_note: str | None = Field(default=None, sa_column=Column(sa.Text()))
    agent_wrapped_by: str | None = Field(default=None, max_length=320)
    agent_wrapped_at: datetime | None = _ts()


class CallEventRecord(SQLModel, table=True):
    """Every canonical event folded into a call: the call's history, and what a merge of
    two calls (a leg linked late) folds again."""

    __tablename__ = "call_events"
    __table_args__ = (sa.UniqueConstraint("webhook_event_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    call_id: int = Field(foreign_key="calls.id", index=True)
    webhook_event_id: int = Field(foreign_key="webhook_events.id")
    position: int  # index of the event within its webhook's canonical list
    event: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class CallPop(SQLModel, table=True):
    """An agent a call's card was shown to (a screen-pop), kept beyond the card's life in
    Redis: who may write the call's wrap-up, and whose missed calls it is (a ring group
    rings several agents, and the call row names only one)."""

    __tablename__ = "call_pops"
    __table_args__ = (sa.UniqueConstraint("call_id", "agent_email"),)

    id: int | None = Field(default=None, primary_key=True)
    call_id: int = Field(foreign_key="calls.id", index=True)
    agent_email: str = Field(max_length=320, index=True)
    shown_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # The contact the card showed, if any: the lists name the caller before the call is logged.
    contact_name: str | None = Field(default=None, max_length=200)


class CrmSyncAttempt(SQLModel, table=True):
    """Every attempt to write a call to the CRM, for the operator's eyes."""

    __tablename__ = "crm_sync_attempts"

    id: int | None = Field(default=None, primary_key=True)
    call_id: int = Field(foreign_key="calls.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    action: str = Field(max_length=16)  # create | update | unchanged
    ok: bool
    http_status: int | None = None
    error: str | None = Field(default=None, sa_column=Column(sa.Text()))
    crm_id: str | None = Field(default=None, max_length=64)
    # How long the attempt took, and each HubSpot request it sent ("METHOD /path", status,
    # ms, error): `worker/crm/request_journal.py`. None on attempts made before 0004.
    duration_ms: int | None = None
    requests: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))


class DryRunRequest(SQLModel, table=True):
    """A request the dry-run CRM would have sent to HubSpot, exactly as it would be sent."""

    __tablename__ = "dry_run_requests"

    id: int | None = Field(default=None, primary_key=True)
    call_id: int | None = Field(default=None, foreign_key="calls.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    method: str = Field(max_length=8)
    path: str = Field(max_length=500)
    body: dict[str, Any] | list[Any] | None = Field(default=None, sa_column=Column(JSON))


class AgentLink(SQLModel, table=True):
    """A personal link (an agent's page, or an operator's sign-in): signed, expiring, and
    revocable through its row."""

    __tablename__ = "agent_links"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, index=True)
    # `agent` opens the agent page; `operator` signs in to the operator pages.
    role: str = Field(
        default="agent", sa_column=Column(sa.String(16), nullable=False, server_default="agent")
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # None only on links made before links expired: they count from created_at.
    expires_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class DialAttempt(SQLModel, table=True):
    """Every click-to-call an agent asked for, placed or refused, for the operator's eyes."""

    __tablename__ = "dial_attempts"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    agent_email: str = Field(max_length=320, index=True)
    # What the agent asked for, as typed (bounded), and its E.164 form when it parsed.
    requested: str = Field(default="", max_length=64)
    destination: str | None = Field(default=None, max_length=32)
    platform: str | None = Field(default=None, max_length=64)
    # placed | refused (policy) | rate_limited | failed (the platform refused or failed)
    result: str = Field(max_length=16, index=True)
    reason: str | None = Field(default=None, sa_column=Column(sa.Text()))
    platform_call_id: str | None = Field(default=None, max_length=200)


class PlatformCredential(SQLModel, table=True):
    """A platform account's OAuth tokens (Kwebbl), encrypted with SECRET_KEY.

    One row per platform; `status` says whether callhook can use it or an admin must
    connect the account again (a refresh was refused).
    """

    __tablename__ = "platform_credentials"
    __table_args__ = (sa.UniqueConstraint("platform"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=64)
    access_token: str = Field(sa_column=Column(sa.Text(), nullable=False))  # encrypted
    refresh_token: str = Field(sa_column=Column(sa.Text(), nullable=False))  # encrypted
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    scope: str = Field(default="", max_length=500)
    status: str = Field(default="connected", max_length=16)  # connected | reauthorize
    error: str | None = Field(default=None, sa_column=Column(sa.Text()))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
