"""The small interface every CRM adapter implements, and the errors it raises.

The worker only knows this module: a second CRM is one adapter module and one
YAML file. Errors are split by what the worker must do next: retry later
(`TransientCrmError`, with the CRM's Retry-After when it gave one) or record and
stop (`PermanentCrmError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from worker.core.models import Call


class CrmError(Exception):
    """`nothing_created`: True when the call's create surely did not happen (refused alone
    in a batch, or failed before it was sent), None when only the status can tell."""

    def __init__(
        self, message: str, *, status: int | None = None, nothing_created: bool | None = None
    ):
        super().__init__(message)
        self.status = status
        self.nothing_created = nothing_created


class TransientCrmError(CrmError):
    """Timeouts, 429, 5xx: the same request may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        nothing_created: bool | None = None,
    ):
        super().__init__(message, status=status, nothing_created=nothing_created)
        self.retry_after = retry_after


class PermanentCrmError(CrmError):
    """Validation errors, bad credentials, daily limit: retrying the same request is useless."""


@dataclass(frozen=True)
class CallSnapshot:
    """A call's state copied out of the database, so CRM I/O holds no transaction."""

    id: int
    platform: str
    platform_call_id: str
    stage: str
    ended: bool
    direction: str | None
    external_number: str | None
    external_number_raw: str | None
    company_number: str | None
    agent: str | None
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    duration_s: int | None
    talk_s: int | None
    outcome: str | None
    recording_url: str | None
    hangup_cause: str | None
    variables: dict[str, Any]
    crm_id: str | None
    crm_contact_id: str | None
    crm_task_id: str | None
    # A create was sent earlier and its answer never stored: look for that record first.
    create_in_doubt: bool = False
    # The agent's wrap-up (agent page): a HubSpot call outcome id, a note, who wrote them.
    agent_outcome: str | None = None
    agent_note: str | None = None
    agent_wrapped_by: str | None = None

    @classmethod
    def of(cls, call: Call) -> CallSnapshot:
        assert call.id is not None
        fields = {n: getattr(call, n) for n in cls.__dataclass_fields__ if n != "create_in_doubt"}
        in_doubt = call.crm_id is None and call.crm_create_sent_at is not None
        return cls(**fields, create_in_doubt=in_doubt)

    @property
    def external_id(self) -> str:
        """callhook's key for this call in the CRM: finds a record whose creation went unheard."""
        return f"callhook:{self.platform}:{self.platform_call_id}"


@dataclass
class Contact:
    id: str
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        first = self.properties.get("firstname") or ""
        last = self.properties.get("lastname") or ""
        return f"{first} {last}".strip()


@dataclass
class LogResult:
    crm_id: str
    action: str  # "create" | "update" | "recover" (found a record created by a lost attempt)
    contact_id: str | None
    owner_id: str | None
    # How the contact was chosen, when it was a choice ("2 contacts share this number…").
    contact_note: str | None = None
    task_id: str | None = None  # the missed-call follow-up task after this sync, if any
    # The call record is written but a follow-up step (the task) failed: retry later.
    incomplete: CrmError | None = None
    # The name of the contact it was logged on, kept for the agent page's lists.
    contact_name: str | None = None


class CrmAdapter(Protocol):
    """What the worker needs from a CRM."""

    def find_contact_by_number(self, e164: str) -> Contact | None: ...

    def log_call(self, call: CallSnapshot) -> LogResult:
        """Create the call record, or update it in place when ``call.crm_id`` is set."""
        ...

    def log_calls(self, calls: list[CallSnapshot]) -> dict[int, LogResult | CrmError]:
        """`log_call` for many calls at once (a flush), in as few requests as the CRM
        allows: each call's result, or the error that concerns it (and it alone)."""
        ...

    def owner(self, owner_id: str | None) -> dict[str, Any] | None:
        """An owner's id, email and names (cached)."""
        ...

    def account_details(self) -> dict[str, Any]:
        """The CRM account's details (portal id, UI host)."""
        ...


class CrmLookups(Protocol):
    """What a screen-pop card, the agent page and the console ask of a CRM: reads and
    links to its records. With `CrmAdapter` (logging), all that a second CRM implements:
    nothing in worker/tasks, worker/reports or the web app names HubSpot's internals."""

    def find_contact_by_number(self, e164: str) -> Contact | None: ...

    def owner(self, owner_id: str | None) -> dict[str, Any] | None: ...

    def owner_for_email(self, email: str, known_id: str | None = None) -> str | None:
        """The CRM user id of a colleague, by email (cached)."""
        ...

    def outcome_choices(self) -> dict[str, str]:
        """The outcomes an agent may pick after a call: id -> label."""
        ...

    def wants_open_deal(self) -> bool:
        """Whether cards show the caller's open deal (the CRM file asks for it)."""
        ...

    def open_deal(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's open deal ({id, properties}), if any."""
        ...

    def record_url(self, kind: str, record_id: str | None) -> str | None:
        """The page of a record (kind: contact, company, deal, call) in the CRM, or None.
        Raises CrmError when the CRM must be asked (its account) and does not answer."""
        ...
