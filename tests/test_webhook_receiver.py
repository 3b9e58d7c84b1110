"""The receiver's fixed path: every refusal is a clear 4xx, everything accepted is stored."""

from __future__ import annotations

import json
import os

from sqlmodel import Session, select

from tests.conftest import KAVKOM_SECRET, load_fixture
from worker.core.db import get_engine
from worker.core.models import EventStatus, WebhookEvent

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}


def stored(event_id: int) -> WebhookEvent:
    with Session(get_engine()) as session:
        row = session.get(WebhookEvent, event_id)
        assert row is not None
        return row


def cdr(call_id: str) -> dict:
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload["callUuid"] = call_id
    return payload


def test_missing_wrong_and_malformed_credentials_get_401(client) -> None:  # type: ignore[no-untyped-def]
    body = cdr("auth-1")
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": KAVKOM_SECRET},
        {"Authorization": f"Basic {KAVKOM_SECRET}"},
        {"Authorization": "Bearer"},
    ):
        response = client.post("/webhooks/kavkom", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.json["error"] == "auth_failed"
        assert KAVKOM_SECRET not in response.get_data(as_text=True)


def test_rotated_secret_accepts_old_and_new(client) -> None:  # type: ignore[no-untyped-def]
    os.environ["KAVKOM_WEBHOOK_SECRET_PREVIOUS"] = "the-old-one"
    try:
        old = client.post(
            "/webhooks/kavkom", json=cdr("rot-1"), headers={"Authorization": "Bearer the-old-one"}
        )
        new = client.post("/webhooks/kavkom", json=cdr("rot-2"), headers=AUTH)
    finally:
        del os.environ["KAVKOM_WEBHOOK_SECRET_PREVIOUS"]
    assert (old.status_code, new.status_code) == (200, 200)
    gone = client.post(
        "/webhooks/kavkom", json=cdr("rot-3"), headers={"Authorization": "Bearer the-old-one"}
    )
    assert gone.status_code == 401


def test_body_that_is_not_json_gets_400(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/webhooks/kavkom", data=b"{not json", content_type="application/json", headers=AUTH
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json["reason"]


def test_unsupported_content_type_gets_415(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/webhooks/kavkom", data=b"event=cdr", content_type="text/plain", headers=AUTH
    )
    assert response.status_code == 415
    # Kavkom's mapping reads JSON only: a form body is refused with the reason.
    form = client.post("/webhooks/kavkom", data={"event": "cdr"}, headers=AUTH)
    assert form.status_code == 415
    assert "kavkom accepts json" in form.json["reason"]


def test_unknown_platform_gets_404(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/webhooks/nosuchpbx", json={"a": 1}, headers=AUTH)
    assert response.status_code == 404
    assert "nosuchpbx" in response.json["reason"]


def test_oversized_body_gets_413(client) -> None:  # type: ignore[no-untyped-def]
    big = json.dumps({"event": "cdr", "pad": "x" * 1_100_000})
    response = client.post(
        "/webhooks/kavkom", data=big, content_type="application/json", headers=AUTH
    )
    assert response.status_code == 413
    assert response.json["error"] == "too_large"


def test_unmappable_payload_is_kept_and_answered_200_unmapped(client) -> None:  # type: ignore[no-untyped-def]
    # kavkom.yaml says `on_unmapped: accept`: kept with the reason, answered 200 so the
    # platform never counts it as a failed delivery (tests/test_unmatched_policy.py has
    # `refuse`, the 422).
    payload = {"event": "cdr", "direction": "outbound", "number": "33612345678"}
    response = client.post("/webhooks/kavkom", json=payload, headers=AUTH)
    assert response.status_code == 200
    assert response.json["status"] == "unmapped"
    assert response.json["reason"] == "cdr: call_id: callUuid is missing"
    row = stored(response.json["id"])
    assert row.status == EventStatus.UNMAPPED
    assert json.loads(row.body) == payload
    assert row.error == "cdr: call_id: callUuid is missing"
    assert row.canonical == [] and row.enqueued_at is None  # nothing for the worker


def test_duplicate_delivery_answers_200_with_the_same_id(client) -> None:  # type: ignore[no-untyped-def]
    first = client.post("/webhooks/kavkom", json=cdr("dup-1"), headers=AUTH)
    second = client.post("/webhooks/kavkom", json=cdr("dup-1"), headers=AUTH)
    assert first.status_code == second.status_code == 200
    assert first.json["status"] == "accepted"
    assert second.json == {"status": "duplicate", "id": first.json["id"]}
    with Session(get_engine()) as session:
        rows = session.exec(select(WebhookEvent).where(WebhookEvent.platform == "kavkom")).all()
        assert sum('"dup-1"' in r.body for r in rows) == 1


def test_known_but_ignored_event_is_stored_and_answered_200(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/webhooks/kavkom",
        data=load_fixture("kavkom", "ping.json"),
        content_type="application/json",
        headers=AUTH,
    )
    assert response.status_code == 200
    assert response.json["status"] == "ignored"
    assert stored(response.json["id"]).status == EventStatus.IGNORED


def test_health_and_readiness(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "database": "ok", "redis": "ok"}
