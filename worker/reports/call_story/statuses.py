"""The operator's words for a call's CRM state, and which calls each word selects.

One place for the five words, so the list's filter, its rows and a story's header agree.
Statuses as the operator reads them (`STATUSES`), from ``calls.crm_status``:

- ``logged``: synced to HubSpot;
- ``pending``: not logged yet, waiting for the call to end (``waiting``) or for the sync
  that is due (``pending``);
- ``failed``: a permanent HubSpot error or retries exhausted (``crm_error`` says which);
- ``dry_run``: recorded on the dry-run page, not sent;
- ``not_logged``: callhook has no policy that *skips* a call (``worker/tasks/call_logging.py``
  writes every ended call; ``worker/crm/hubspot.py`` only chooses the contact). What a
  policy decides is the contact: an unknown caller under ``unknown_caller: no_contact``,
  one of the company's own numbers, an internal call, are written *without a contact*,
  with the reason in ``crm_contact_note``. So ``not_logged`` selects those calls (synced or
  dry-run, no ``crm_contact_id``): "not logged on any contact, by policy". The rows still
  say ``logged`` (they are in HubSpot), with a "no contact" mark beside it.
"""

from __future__ import annotations

from worker.core.models import Call, CrmStatus

STATUSES: dict[str, str] = {
    "logged": "logged",
    "pending": "pending",
    "failed": "failed",
    "dry_run": "dry run",
    "not_logged": "no contact (policy)",
}
_STATUS_OF: dict[str, str] = {
    CrmStatus.SYNCED: "logged",
    CrmStatus.WAITING: "pending",
    CrmStatus.PENDING: "pending",
    CrmStatus.FAILED: "failed",
    CrmStatus.DRY_RUN: "dry_run",
}


def status_of(call: Call) -> str:
    """The operator's word for a call's CRM state (see the module's docstring)."""
    return _STATUS_OF.get(call.crm_status, call.crm_status)


def without_contact(call: Call) -> bool:
    """Logged (or recorded) with no contact: the policy's choice, `crm_contact_note` says why."""
    return call.crm_status in (CrmStatus.SYNCED, CrmStatus.DRY_RUN) and not call.crm_contact_id
