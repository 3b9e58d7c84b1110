"""Each HubSpot sync attempt keeps the requests it sent: what the call's story page shows.

An operator asking "why is this call not in HubSpot?" reads, per attempt, which request
went out, what HubSpot answered and how long it took: a refusal names its status and
HubSpot's reason; a success shows the search and the create with their real statuses.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from tests.conftest import wait_until
from tests.test_call_logging_e2e import cdr, post
from worker.core.db import get_engine
from worker.core.models import Call, CrmSyncAttempt


def attempts(call_id: str) -> list[CrmSyncAttempt]:
    with Session(get_engine()) as session:
        call = session.exec(select(Call).where(Call.platform_call_id == call_id)).first()
        if call is None:
            return []
        return list(
            session.exec(
                select(CrmSyncAttempt)
                .where(CrmSyncAttempt.call_id == call.id)
                .order_by(CrmSyncAttempt.id)  # type: ignore[arg-type]
            )
        )


def test_a_logged_call_keeps_its_search_and_create_with_statuses_and_times(  # type: ignore[no-untyped-def]
    client, hubspot
) -> None:
    hubspot.add_contact(firstname="Ada", lastname="Lovelace", phone="06 12 34 56 11")
    post(client, cdr("journal-ok", number="33612345611"))
    (attempt,) = wait_until(lambda: attempts("journal-ok"), timeout=30)
    assert attempt.ok and attempt.action == "create"
    sent = attempt.requests or []
    by_request = {(r["method"], r["path"]): r for r in sent}
    search = by_request[("POST", "/crm/v3/objects/contacts/search")]
    create = by_request[("POST", "/crm/v3/objects/calls")]
    assert search["status"] == 200 and create["status"] == 201
    assert all(r["ms"] >= 0 and r["error"] is None for r in sent)
    # The journal is the requests HubSpot saw for this call, no more, no fewer.
    logged = [r for r in hubspot.requests() if r["path"].startswith("/crm/v3/objects/calls")]
    assert len([r for r in sent if r["path"] == "/crm/v3/objects/calls"]) == len(
        [r for r in logged if r["method"] == "POST" and r["path"] == "/crm/v3/objects/calls"]
    )
    assert attempt.duration_ms is not None
    assert attempt.duration_ms >= max(r["ms"] for r in sent) - 1


def test_a_refused_create_keeps_hubspots_status_and_reason(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    hubspot.fail_next(1, 400, path_prefix="/crm/v3/objects/calls")
    post(client, cdr("journal-refused", number="33612345612"))

    def failed() -> list[Any]:
        return [a for a in attempts("journal-refused") if not a.ok]

    (attempt,) = wait_until(failed, timeout=30)
    refused = [r for r in attempt.requests or [] if r["path"] == "/crm/v3/objects/calls"]
    assert [r["status"] for r in refused] == [400]
    assert refused[0]["error"] and "400" in refused[0]["error"]
    assert attempt.http_status == 400
