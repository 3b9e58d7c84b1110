"""The verdict: "is this call in HubSpot, on the right contact, and if not why", in words.

The sentence an operator acts on first, so it is its own module: one branch per CRM
state, each saying what happened and what (if anything) to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.core.models import Call, CrmStatus
from worker.core.redaction import Redactor
from worker.reports.call_story.entries import Attempt, Delivery, DryRun
from worker.reports.call_story.formatting import number_text, utc_stamp


@dataclass(frozen=True)
class Verdict:
    """The answer to "is this call in HubSpot, on the right contact, and if not why"."""

    tone: str  # ok | bad | warn | muted (the stylesheet's badge/answer classes)
    text: str
    retry: bool = False  # point to the Problems page, where a failed call is retried


def _last_attempt(entries: list[Any]) -> Attempt | None:
    attempts = [e for e in entries if isinstance(e, Attempt)]
    return attempts[-1] if attempts else None


def verdict(call: Call, entries: list[Any], redactor: Redactor) -> Verdict:
    """One plain sentence (or two) an operator can act on, from the call and its story."""
    error = redactor.text(call.crm_error)
    status = call.crm_status
    if status == CrmStatus.SYNCED:
        return _logged_verdict(call, error)
    if status == CrmStatus.DRY_RUN:
        sent = sum(1 for e in entries if isinstance(e, DryRun))
        on = (
            f" on contact {call.crm_contact_name or call.crm_contact_id}"
            if call.crm_contact_id
            else ""
        )
        return Verdict(
            "muted",
            f"Dry run: recorded, not sent ({sent} HubSpot request{'s' * (sent != 1)} "
            f"recorded{on}). Set HUBSPOT_ACCESS_TOKEN to send calls.",
        )
    if status == CrmStatus.FAILED:
        return Verdict("bad", f"Failed: {error or 'no error was recorded'}", retry=True)
    if status == CrmStatus.PENDING:
        return _pending_verdict(call, entries)
    deliveries = [e for e in entries if isinstance(e, Delivery)]
    last = deliveries[-1] if deliveries else None
    said = f"{last.events[-1][0] or 'an event'}" if last and last.events else call.stage
    return Verdict(
        "warn",
        f"Not logged yet: the call has not ended (last event {said}, received "
        f"{utc_stamp(last.at if last else call.updated_at)}). It is logged when the platform "
        "reports its end.",
    )


def _logged_verdict(call: Call, error: str) -> Verdict:
    number = number_text(call)
    if call.crm_contact_id:
        name = call.crm_contact_name or f"contact {call.crm_contact_id}"
        text = (
            f"Logged in HubSpot as call {call.crm_id} on contact {name} "
            f"(matched by number {number})."
        )
        if call.crm_contact_note:
            text += f" Note: {call.crm_contact_note}."
        tone = "ok"
    else:
        reason = call.crm_contact_note or (
            f"no HubSpot contact has the number {number}"
            if call.external_number
            else "the platform gave no caller number"
        )
        text = f"Logged without a contact (call {call.crm_id}): {reason}."
        tone = "warn"
    if error:
        text += f" Last problem: {error}."
    return Verdict(tone, text)


def _pending_verdict(call: Call, entries: list[Any]) -> Verdict:
    last = _last_attempt(entries)
    if call.crm_lease_until and call.crm_lease_until > datetime.now(UTC):
        return Verdict("warn", "Not logged yet: a worker is writing it to HubSpot right now.")
    if last is not None and not last.ok:
        code = f" {last.http_status}" if last.http_status else ""
        return Verdict(
            "warn",
            f"Not logged yet: HubSpot refused the last attempt ({utc_stamp(last.at)}){code}: "
            f"{last.error}. The worker retries it by itself.",
        )
    return Verdict(
        "warn",
        f"Not logged yet: the call ended ({utc_stamp(call.ended_at)}) and its sync is queued; "
        "the worker writes it shortly (the outbox sweep re-queues a lost one).",
    )
