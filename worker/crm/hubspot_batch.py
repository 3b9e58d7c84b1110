"""Many calls logged in a few HubSpot requests: the body of a flush.

Apart from the single-call path because its failure modes are its own: a batch request
can fail whole (a 429, a 5xx, a 400) or for one input (a 207 naming it by
``objectWriteTraceId``), and HubSpot answers results out of order. Each call of the flush
ends with its own result or its own error, so the caller (`call_logging`) stores and
retries each call as if it had been logged alone.

For the calls of one flush: one contact search (`IN` over the numbers the cache does not
know), one calls search (`IN`) for creates whose answer was lost, one
``calls/batch/create`` with the associations inline, one ``calls/batch/update``, one
``tasks/batch/create`` and one ``tasks/batch/update``; owners and account details come
from caches. A call whose contact became known after its record was made, or whose task
must be withdrawn, still costs its own request (rare, and kept as today).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.core.events import Direction
from worker.crm import request_journal
from worker.crm.base import (
    CallSnapshot,
    Contact,
    CrmError,
    LogResult,
    PermanentCrmError,
    TransientCrmError,
)
from worker.crm.hubspot_transport import BatchAnswer, Transport


class HubSpotCrm(Protocol):
    """What a flush uses of ``worker.crm.hubspot.HubSpotCrm`` (a protocol, not an import:
    the adapter calls the flush, importing it back would make the two modules a cycle)."""

    transport: Transport

    def contacts_for_numbers(self, numbers: list[str]) -> dict[str, list[Contact]]: ...
    def _contacts_for(
        self, call: CallSnapshot, *, fresh: bool, known: dict[str, list[Contact]] | None = None
    ) -> tuple[list[Contact], str | None]: ...
    def call_owner(
        self, call: CallSnapshot, primary: Contact | None, note: str | None
    ) -> tuple[str | None, str | None]: ...
    def record_properties(
        self, call: CallSnapshot, primary: Contact | None, owner_id: str | None
    ) -> dict[str, Any]: ...
    def _associations(self, contacts: list[Contact]) -> list[dict[str, Any]]: ...
    def find_logged_calls(self, external_ids: list[str]) -> dict[str, str]: ...
    def attach_new_contacts(
        self, call: CallSnapshot, crm_id: str, contacts: list[Contact]
    ) -> None: ...
    def _wants_task(self, call: CallSnapshot) -> bool: ...
    def task_create_body(self, call: CallSnapshot, contact: Contact | None) -> dict[str, Any]: ...
    def _task_properties(self, call: CallSnapshot, contact: Contact | None) -> dict[str, str]: ...


BATCH_INPUTS = 100  # HubSpot's cap on a batch's inputs


@dataclass
class _Plan:
    """One call's way through the flush."""

    call: CallSnapshot
    contacts: list[Contact]
    note: str | None
    owner_id: str | None
    properties: dict[str, Any]
    crm_id: str | None = None
    action: str = "update"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trace(self) -> str:
        return str(self.call.id)

    @property
    def primary(self) -> Contact | None:
        return self.contacts[0] if self.contacts else None


def log_batch(crm: HubSpotCrm, calls: list[CallSnapshot]) -> dict[int, LogResult | CrmError]:
    """Log `calls` together; every call gets its LogResult or its own error."""
    out: dict[int, LogResult | CrmError] = {}
    plans = _plan(crm, calls, out)
    _recover(crm, plans, out)
    creates = [p for p in plans if p.crm_id is None and p.call.id not in out]
    updates = [p for p in plans if p.crm_id and p.call.id not in out]
    written = _create(crm, creates, out) + _update(crm, updates, out)
    results = {}
    for p in written:
        result = LogResult(
            p.crm_id or "", p.action, p.primary.id if p.primary else None, p.owner_id, p.note,
            p.call.crm_task_id,
        )  # fmt: skip
        result.contact_name = (p.primary.name or None) if p.primary else None
        results[p.call.id] = result
    _tasks(crm, written, results)
    out.update(results)
    return out


def _plan(
    crm: HubSpotCrm, calls: list[CallSnapshot], out: dict[int, LogResult | CrmError]
) -> list[_Plan]:
    """Contacts (one search for all), owners, properties: nothing is written yet."""
    looked_up = {
        c.id: c.external_number
        for c in calls
        if c.external_number and c.direction != Direction.INTERNAL
    }
    try:
        with request_journal.about(set(looked_up)):
            known = crm.contacts_for_numbers([n for n in looked_up.values() if n])
    except CrmError as exc:
        exc.nothing_created = True  # nothing was sent for any call
        out.update({c.id: exc for c in calls})
        return []
    plans = []
    for call in calls:
        try:
            with request_journal.about({call.id}):
                contacts, note = crm._contacts_for(call, fresh=False, known=known)
                primary = contacts[0] if contacts else None
                owner_id, note = crm.call_owner(call, primary, note)
                properties = crm.record_properties(call, primary, owner_id)
                plan = _Plan(call, contacts, note, owner_id, properties, crm_id=call.crm_id)
                if plan.crm_id is None and not call.create_in_doubt:
                    plan.extra["associations"] = crm._associations(contacts)
        except CrmError as exc:
            exc.nothing_created = True
            out[call.id] = exc
            continue
        plans.append(plan)
    return plans


def _recover(crm: HubSpotCrm, plans: list[_Plan], out: dict[int, LogResult | CrmError]) -> None:
    """Creates whose answer was lost: one search finds the records they made, if any."""
    doubtful = [p for p in plans if p.crm_id is None and p.call.create_in_doubt]
    if not doubtful:
        return
    try:
        with request_journal.about({p.call.id for p in doubtful}):
            found = crm.find_logged_calls([p.call.external_id for p in doubtful])
    except CrmError as exc:
        out.update({p.call.id: exc for p in doubtful})  # still in doubt: searched again later
        return
    for p in doubtful:
        p.crm_id = found.get(p.call.external_id)
        if p.crm_id:
            p.action = "recover"
        else:  # never made: created now, with its associations
            p.extra["associations"] = crm._associations(p.contacts)


def _chunks(plans: list[_Plan]) -> list[list[_Plan]]:
    return [plans[i : i + BATCH_INPUTS] for i in range(0, len(plans), BATCH_INPUTS)]


def _send(plans: list[_Plan], send: Any, inputs: list[dict[str, Any]]) -> BatchAnswer | CrmError:
    try:
        with request_journal.about({p.call.id for p in plans}):
            answer: BatchAnswer = send(inputs)
            return answer
    except CrmError as exc:
        return exc


def _unmentioned(what: str) -> TransientCrmError:
    return TransientCrmError(f"HubSpot's answer to the batch {what} did not mention this call")


def _create(
    crm: HubSpotCrm, plans: list[_Plan], out: dict[int, LogResult | CrmError]
) -> list[_Plan]:
    """``calls/batch/create``, results matched by trace id; a refused input is that call's
    error (nothing created), an unmentioned one stays in doubt."""
    written = []
    for chunk in _chunks(plans):
        inputs = [
            {"properties": p.properties, "associations": p.extra.get("associations", []),
             "objectWriteTraceId": p.trace}
            for p in chunk
        ]  # fmt: skip
        answer = _send(chunk, lambda i: crm.transport.batch_create("calls", i), inputs)
        for p in chunk:
            if isinstance(answer, CrmError):
                out[p.call.id] = answer
            elif p.trace in answer.ids:
                p.crm_id, p.action = answer.ids[p.trace], "create"
                written.append(p)
            elif p.trace in answer.errors:
                out[p.call.id] = PermanentCrmError(
                    answer.errors[p.trace], status=400, nothing_created=True
                )
            else:
                out[p.call.id] = _unmentioned("create")
    return written


def _update(
    crm: HubSpotCrm, plans: list[_Plan], out: dict[int, LogResult | CrmError]
) -> list[_Plan]:
    """``calls/batch/update`` by record id; then, per call, contacts known only now."""
    written, seen = [], set()
    for p in plans:
        if p.crm_id in seen:  # two calls on one record (never expected): one at a time
            out[p.call.id] = TransientCrmError("another call of this flush has the same record")
        seen.add(p.crm_id)
    plans = [p for p in plans if p.call.id not in out]
    for chunk in _chunks(plans):
        inputs = [
            {"id": p.crm_id, "properties": p.properties, "objectWriteTraceId": p.trace}
            for p in chunk
        ]
        answer = _send(chunk, lambda i: crm.transport.batch_update("calls", i), inputs)
        for p in chunk:
            if isinstance(answer, CrmError):
                out[p.call.id] = answer
            elif p.trace in answer.ids:
                written.append(p)
            elif p.trace in answer.errors:
                text = answer.errors[p.trace]
                out[p.call.id] = PermanentCrmError(
                    text, status=404 if "OBJECT_NOT_FOUND" in text else 400
                )
            else:
                out[p.call.id] = _unmentioned("update")
    done = []
    for p in written:
        try:
            with request_journal.about({p.call.id}):
                crm.attach_new_contacts(p.call, p.crm_id or "", p.contacts)
        except CrmError as exc:
            out[p.call.id] = exc
            continue
        done.append(p)
    return done


def _tasks(crm: HubSpotCrm, written: list[_Plan], results: dict[int, LogResult]) -> None:
    """The missed-call tasks: created and updated in one batch each; a task failure leaves
    its call's record written and the sync incomplete (retried for the task alone)."""
    creates, updates = [], []
    for p in written:
        result, task_id, wanted = results[p.call.id], p.call.crm_task_id, crm._wants_task(p.call)
        if task_id is None and wanted:
            creates.append(p)
        elif task_id is not None and not wanted:
            try:
                with request_journal.about({p.call.id}):
                    crm.transport.delete_task(task_id)
                result.task_id = None
            except CrmError as exc:
                result.incomplete = exc
        elif task_id is not None:
            updates.append(p)
    for chunk in _chunks(creates):
        inputs = [
            {**crm.task_create_body(p.call, p.primary), "objectWriteTraceId": p.trace}
            for p in chunk
        ]
        answer = _send(chunk, lambda i: crm.transport.batch_create("tasks", i), inputs)
        _task_results(chunk, answer, results, created=True)
    for chunk in _chunks(updates):
        inputs = [
            {"id": p.call.crm_task_id,
             "properties": crm._task_properties(p.call, p.primary),
             "objectWriteTraceId": p.trace}
            for p in chunk
        ]  # fmt: skip
        answer = _send(chunk, lambda i: crm.transport.batch_update("tasks", i), inputs)
        _task_results(chunk, answer, results, created=False)


def _task_results(
    chunk: list[_Plan],
    answer: BatchAnswer | CrmError,
    results: dict[int, LogResult],
    *,
    created: bool,
) -> None:
    for p in chunk:
        result = results[p.call.id]
        if isinstance(answer, CrmError):
            result.incomplete = answer
        elif p.trace in answer.ids:
            if created:
                result.task_id = answer.ids[p.trace]
        elif p.trace in answer.errors:
            result.incomplete = PermanentCrmError(answer.errors[p.trace], status=400)
        else:
            result.incomplete = _unmentioned("task create" if created else "task update")
