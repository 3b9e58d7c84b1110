"""The dry-run CRM: what HubSpot would have received, kept instead of sent.

Used whenever ``HUBSPOT_ACCESS_TOKEN`` is unset, so a new user sees the exact
requests before giving callhook a token (``callhook dry-run``, or ``/dry-run``).
A dry run finds no contacts and no owners: it has nobody to ask.
"""

from __future__ import annotations

from typing import Any

from worker.core.db import session_scope
from worker.core.models import DryRunRequest
from worker.crm.hubspot_transport import BatchAnswer


class RecordingTransport:
    """Keeps each request in memory (``callhook mappings try`` prints them)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def _record(self, method: str, path: str, body: Any) -> int:
        self.requests.append({"method": method, "path": path, "body": body})
        return len(self.requests)

    def search_contacts(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        self._record("POST", "/crm/v3/objects/contacts/search", body)
        return []

    def search_page(
        self, object_type: str, body: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], str | None]:
        self._record("POST", f"/crm/v3/objects/{object_type}/search", body)
        return [], None

    def batch_create(self, object_type: str, inputs: list[dict[str, Any]]) -> BatchAnswer:
        number = self._record(
            "POST", f"/crm/v3/objects/{object_type}/batch/create", {"inputs": inputs}
        )
        return BatchAnswer(
            ids={
                str(i["objectWriteTraceId"]): f"dry-run-{number}-{n}" for n, i in enumerate(inputs)
            }
        )

    def batch_update(self, object_type: str, inputs: list[dict[str, Any]]) -> BatchAnswer:
        self._record("POST", f"/crm/v3/objects/{object_type}/batch/update", {"inputs": inputs})
        return BatchAnswer(ids={str(i["objectWriteTraceId"]): str(i["id"]) for i in inputs})

    def search_calls(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        self._record("POST", "/crm/v3/objects/calls/search", body)
        return []

    def create_call(self, body: dict[str, Any]) -> str:
        return f"dry-run-{self._record('POST', '/crm/v3/objects/calls', body)}"

    def update_call(self, crm_id: str, body: dict[str, Any]) -> None:
        self._record("PATCH", f"/crm/v3/objects/calls/{crm_id}", body)

    def owner_id_for_email(self, email: str) -> str | None:
        self._record("GET", f"/crm/v3/owners?email={email}&limit=1", None)
        return None

    def owner_by_id(self, owner_id: str) -> dict[str, Any] | None:
        self._record("GET", f"/crm/v3/owners/{owner_id}", None)
        return None

    def search_deals(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        self._record("POST", "/crm/v3/objects/deals/search", body)
        return []

    def associate_call(self, call_id: str, to_type: str, to_id: str, type_id: int) -> None:
        spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]
        self._record("PUT", f"/crm/v4/objects/calls/{call_id}/associations/{to_type}/{to_id}", spec)

    def create_task(self, body: dict[str, Any]) -> str:
        return f"dry-run-{self._record('POST', '/crm/v3/objects/tasks', body)}"

    def update_task(self, task_id: str, body: dict[str, Any]) -> None:
        self._record("PATCH", f"/crm/v3/objects/tasks/{task_id}", body)

    def delete_task(self, task_id: str) -> None:
        self._record("DELETE", f"/crm/v3/objects/tasks/{task_id}", None)

    def create_contact(self, body: dict[str, Any]) -> str:
        return f"dry-run-{self._record('POST', '/crm/v3/objects/contacts', body)}"

    def account_details(self) -> dict[str, Any]:
        # No account to ask: record links in a dry run point nowhere.
        return {}


class DryRunTransport(RecordingTransport):
    """Stores each request in the database with the call it belongs to."""

    def __init__(self, call_id: int | None = None):
        super().__init__()
        self.call_id = call_id

    def _record(self, method: str, path: str, body: Any) -> int:
        with session_scope() as session:
            row = DryRunRequest(call_id=self.call_id, method=method, path=path, body=body)
            session.add(row)
            session.flush()
            assert row.id is not None
            return row.id
