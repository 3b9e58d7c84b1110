"""Kavkom's /calls WebSocket, end to end.

A fake live.kavkom.com (tests/platforms/kavkom/fake_live.py: the token API and the
WebSocket over real sockets) → the real listener (in a thread, or as the `callhook listen
kavkom` process) → ``ingest`` → the real database, Redis and Celery worker → the fake
HubSpot. Nothing of callhook is mocked; delays are shortened through the listener's
parameters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect

from tests.conftest import ROOT, Environment, load_fixture, wait_until
from tests.platforms.kavkom.fake_live import FakeKavkomLive
from webhook_receiver.cli.platforms import listen
from webhook_receiver.listeners.kavkom import (
    Backoff,
    KavkomListener,
    live_endpoints,
    parse_expiry,
    parse_extensions,
)
from webhook_receiver.mapping import load_mappings
from worker.core.db import get_engine
from worker.core.models import WebhookEvent
from worker.tasks.celery_app import configure as configure_celery

REFRESH = "kavkom-refresh-token-for-tests"
FAST = Backoff(initial_s=0.05, cap_s=0.3, refused_s=30.0)
LOGGER = "callhook.listener.kavkom"


@pytest.fixture
def live() -> Iterator[FakeKavkomLive]:
    with FakeKavkomLive(refresh_token=REFRESH) as fake:
        yield fake


@contextmanager
def listening(
    fake: FakeKavkomLive,
    *,
    extensions: tuple[str, ...] = ("1001",),
    refresh_token: str = REFRESH,
    **options: Any,
) -> Iterator[KavkomListener]:
    """The real listener in a thread with its own event loop, stopped (and checked) after."""
    configure_celery()
    listener = KavkomListener(
        mapping=load_mappings(ROOT / "mappings").platforms["kavkom"],
        refresh_token=refresh_token,
        extensions=extensions,
        live_url=fake.url,
        **{"backoff": FAST, "close_timeout_s": 1.0, "overlap_s": 0.2, **options},
    )
    thread = threading.Thread(target=lambda: asyncio.run(listener.serve()), daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stopped_at = time.monotonic()
        listener.stop()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the listener did not stop"
        assert time.monotonic() - stopped_at < 5, "stopping took longer than a few seconds"


def french_mobile() -> str:
    """A valid, unused French mobile number, as Kavkom writes it (digits, no "+")."""
    return "3375" + str(random.randrange(10**7)).zfill(7)


def call_message(fixture: str, call_id: str, number: str) -> dict[str, Any]:
    message = json.loads(load_fixture("kavkom", fixture))
    message["data"].update(callUuid=call_id, number=number)
    return message


def calls_for(hubspot, number: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        c
        for c in hubspot.calls()
        if number
        in (c["properties"].get("hs_call_to_number"), c["properties"].get("hs_call_from_number"))
    ]


def stored(call_id: str) -> list[WebhookEvent]:
    with Session(get_engine()) as session:
        rows = session.exec(select(WebhookEvent).where(WebhookEvent.platform == "kavkom")).all()
        return [row for row in rows if call_id in row.body]


def open_connection(fake: FakeKavkomLive, ext: str = "1001") -> dict[str, Any]:
    (conn,) = wait_until(lambda: fake.connections(ext), timeout=10)
    return conn


def send_call(fake: FakeKavkomLive, ext: str, call_id: str, number: str) -> None:
    for fixture in ("call__ringing_inbound.json", "call__finished_inbound.json"):
        assert fake.send(ext, call_message(fixture, call_id, number)) >= 1


# -- pure pieces -----------------------------------------------------------------------------
def test_live_url_gives_the_token_api_and_the_websocket() -> None:
    assert live_endpoints("https://live.kavkom.com") == (
        "https://live.kavkom.com",
        "wss://live.kavkom.com/calls",
    )
    assert live_endpoints("wss://live.kavkom.com/") == (
        "https://live.kavkom.com",
        "wss://live.kavkom.com/calls",
    )
    assert live_endpoints("http://127.0.0.1:8080")[1] == "ws://127.0.0.1:8080/calls"
    with pytest.raises(ValueError, match="KAVKOM_LIVE_URL"):
        live_endpoints("live.kavkom.com")


def test_extensions_expiry_and_backoff_read_as_documented() -> None:
    assert parse_extensions(" 1001, 1002,,1001 ") == ["1001", "1002"]
    assert parse_expiry("2024-03-18T12:00:00.000Z") == 1710763200.0
    assert parse_expiry("2024-03-18T12:00:00") == 1710763200.0  # zone-less: UTC
    assert parse_expiry(1710763200000) == 1710763200.0
    assert parse_expiry("soon") is None
    backoff = Backoff(initial_s=1, cap_s=60)
    for attempt, (low, high) in {1: (0.5, 1), 2: (1, 2), 3: (2, 4), 10: (30, 60)}.items():
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(low <= d <= high for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_fake_refuses_handshakes_as_the_seed_documents(live: FakeKavkomLive) -> None:
    ws_url = live.url.replace("http://", "ws://") + "/calls"
    for query, status, text in [
        ("?ext=1001", 406, "&t parameter is missing"),
        ("?t=acc-unknown", 406, "&ext parameter is missing"),
        ("?t=acc-unknown&ext=1001", 401, "Invalid token"),
    ]:
        with pytest.raises(InvalidStatus) as refused:
            sync_connect(ws_url + query, open_timeout=5)
        assert refused.value.response.status_code == status
        assert refused.value.response.body.decode() == text


# -- the listener against the fake, into the real pipeline --------------------------------------
def test_call_messages_end_as_exactly_one_hubspot_call(  # type: ignore[no-untyped-def]
    stack, hubspot, live: FakeKavkomLive
) -> None:
    number, call_id = french_mobile(), f"ws-{uuid.uuid4()}"
    with listening(live):
        open_connection(live)
        for fixture in (
            "call__ringing_inbound.json",
            "call__active_inbound.json",
            "call__finished_inbound.json",
            "call__finished_inbound.json",  # resent as is: a duplicate
        ):
            assert live.send("1001", call_message(fixture, call_id, number)) == 1
        (call,) = wait_until(lambda: calls_for(hubspot, "+" + number), timeout=30)
        # Everything sent before a later call has been handled once that call is in HubSpot.
        barrier = french_mobile()
        send_call(live, "1001", f"ws-barrier-{uuid.uuid4()}", barrier)
        wait_until(lambda: calls_for(hubspot, "+" + barrier), timeout=30)

    assert len(calls_for(hubspot, "+" + number)) == 1
    props = call["properties"]
    assert props["hs_call_direction"] == "INBOUND"
    assert props["hs_call_from_number"] == "+" + number
    # Stored like webhooks, marked as WebSocket deliveries; the resent message is not a row.
    rows = stored(call_id)
    assert len(rows) == 3
    assert {(r.method, r.content_type) for r in rows} == {("WS", "application/json")}


def test_ping_gets_the_documented_pong(stack, live: FakeKavkomLive) -> None:  # type: ignore[no-untyped-def]
    with listening(live):
        open_connection(live)
        data = live.ping("1001")
        (pong,) = wait_until(lambda: live.pongs, timeout=10)
    assert pong["message"] == {"event": "pong", "data": data}
    assert stored(str(data["sentStamp"])) == []  # a heartbeat is not a delivery


def test_a_hostile_message_is_refused_and_the_reader_goes_on(  # type: ignore[no-untyped-def]
    stack, hubspot, live: FakeKavkomLive, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    number, call_id = french_mobile(), f"ws-{uuid.uuid4()}"
    with listening(live):
        first = open_connection(live)
        live.send("1001", '{"a":' * 100_000 + "1" + "}" * 100_000)  # nested 100k deep
        live.send("1001", '{"event": "call", "n": ' + "9" * 5000 + "}")
        send_call(live, "1001", call_id, number)
        wait_until(lambda: calls_for(hubspot, "+" + number), timeout=30)
        assert live.connections("1001")[-1]["opened_at"] == first["opened_at"]  # same reader
    assert "listener.kavkom.bad_message ext=1001: body is nested more than" in caplog.text
    assert "more than" in caplog.text and "digits" in caplog.text


def test_dropped_connection_is_reestablished_and_later_messages_arrive(  # type: ignore[no-untyped-def]
    stack, hubspot, live: FakeKavkomLive, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    number, call_id = french_mobile(), f"ws-{uuid.uuid4()}"
    with listening(live):
        first = open_connection(live)
        assert live.drop("1001") == 1
        second = wait_until(
            lambda: [c for c in live.connections("1001") if c["opened_at"] > first["opened_at"]],
            timeout=10,
        )[0]
        send_call(live, "1001", call_id, number)
        wait_until(lambda: calls_for(hubspot, "+" + number), timeout=30)
    assert second["token"] == first["token"]  # still valid: no new token needed
    assert "listener.kavkom.dropped ext=1001" in caplog.text


def test_token_near_expiry_is_renewed_and_the_connection_moved_in_time(  # type: ignore[no-untyped-def]
    stack, live: FakeKavkomLive, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    live.token_lifetime_s = 2.0  # renewed a quarter of its life ahead: after ~1.5 s
    call_id = f"ws-{uuid.uuid4()}"
    with listening(live, min_renew_s=0.1):
        open_connection(live)
        wait_until(lambda: len(live.issued) >= 2, timeout=10)
        first, second = live.issued[:2]
        wait_until(lambda: [c for c in live.connections("1001") if c["token"] == second])
        # The old connection is closed by the listener, not cut by the server at expiry.
        (old,) = wait_until(
            lambda: [
                c
                for c in live.connections("1001", open_only=False)
                if c["token"] == first and not c["open"]
            ],
            timeout=10,
        )
        time.sleep(max(0.0, 2.2 - (time.time() - old["opened_at"])))  # first token expired
        message = call_message("call__ringing_inbound.json", call_id, french_mobile())
        assert live.send("1001", message) >= 1
        wait_until(lambda: stored(call_id), timeout=10)
    assert not old["closed_by_server"]
    assert all(h["status"] == 101 for h in live.handshakes)  # no expired token ever used
    assert live.acquire_requests[0]["json"] == {
        "extensions": [1001],
        "scope": "calls",
        "application": "callhook",
    }
    for token in live.issued:
        assert token not in caplog.text


def test_expiry_is_read_on_kavkoms_clock(stack, live: FakeKavkomLive) -> None:  # type: ignore[no-untyped-def]
    # Kavkom's clock an hour behind ours: its expiresAt looks long past, yet the token is
    # good for 4 s. Read on our clock, it would be renewed again and again.
    live.token_lifetime_s, live.clock_offset_s = 4.0, -3600.0
    with listening(live, min_renew_s=0.1):
        open_connection(live)
        time.sleep(1.5)
        assert len(live.issued) == 1
        wait_until(lambda: len(live.issued) == 2, timeout=5)  # renewed ahead of expiry
        wait_until(lambda: [c for c in live.connections("1001") if c["token"] == live.issued[1]])
    assert all(h["status"] == 101 for h in live.handshakes)
    assert not any(c["closed_by_server"] for c in live.connections(open_only=False))


def test_refused_refresh_token_is_reported_and_not_hammered(  # type: ignore[no-untyped-def]
    stack, live: FakeKavkomLive, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    wrong = "refresh-token-that-kavkom-does-not-know"
    with listening(live, refresh_token=wrong):
        wait_until(lambda: "refresh token refused" in caplog.text, timeout=10)
        time.sleep(0.6)  # with the normal backoff (0.05 to 0.3 s) this would be several tries
        assert len(live.acquire_requests) == 1
    (record,) = [r for r in caplog.records if "token_refused" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "HTTP 401" in record.getMessage()
    assert "set KAVKOM_REFRESH_TOKEN" in record.getMessage()
    assert wrong not in caplog.text
    assert live.handshakes == []


def test_handshake_406_names_the_missing_parameter(  # type: ignore[no-untyped-def]
    stack, live: FakeKavkomLive, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    live.refuse_next(406, "&ext parameter is missing")
    with listening(live):
        wait_until(lambda: "406: ext parameter missing" in caplog.text, timeout=10)
        time.sleep(0.5)
        assert len(live.handshakes) == 1  # a configuration error: no fast retries
    assert "KAVKOM_LISTEN_EXTENSIONS" in caplog.text


def test_access_token_refused_at_the_handshake_is_replaced(  # type: ignore[no-untyped-def]
    stack, live: FakeKavkomLive, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with listening(live):
        first = open_connection(live)
        live.revoke(first["token"])
        live.drop("1001")
        wait_until(lambda: len(live.issued) == 2, timeout=10)
        wait_until(lambda: [c for c in live.connections("1001") if c["token"] == live.issued[1]])
    assert [h["status"] for h in live.handshakes] == [101, 401, 101]
    assert "status=401: access token refused (Kavkom: Invalid token)" in caplog.text


def test_no_token_reaches_the_logs_even_at_debug_level(  # type: ignore[no-untyped-def]
    stack, live: FakeKavkomLive, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with listening(live):
        open_connection(live)
        live.ping("1001")
        wait_until(lambda: live.pongs, timeout=10)
    (token,) = live.issued
    # What the listener and the websockets client (on the listener's logger) wrote; the
    # fake server's own logs are not callhook's.
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(LOGGER))
    assert "GET /calls?t=[hidden]&ext=1001" in text  # the handshake line, masked
    assert token not in text and REFRESH not in text


def test_one_connection_per_extension_with_one_token(  # type: ignore[no-untyped-def]
    stack, live: FakeKavkomLive
) -> None:
    with listening(live, extensions=("1001", "1002")):
        open_connection(live, "1001")
        open_connection(live, "1002")
    (request,) = live.acquire_requests
    assert request["json"]["extensions"] == [1001, 1002]
    assert {h["ext"] for h in live.handshakes} == {"1001", "1002"}


# -- the `callhook listen kavkom` process -------------------------------------------------------
def test_listen_process_logs_calls_and_stops_cleanly_on_sigterm(  # type: ignore[no-untyped-def]
    stack, live: FakeKavkomLive
) -> None:
    env = {
        **os.environ,
        **stack["env"],
        "KAVKOM_REFRESH_TOKEN": REFRESH,
        "KAVKOM_LIVE_URL": live.url,
        "KAVKOM_LISTEN_EXTENSIONS": "1001",
        "PYTHONUNBUFFERED": "1",
    }
    command = "from webhook_receiver.cli.platforms import listen; listen(['kavkom'])"
    proc = subprocess.Popen(
        [sys.executable, "-c", command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        open_connection(live)
        call_id = f"ws-{uuid.uuid4()}"
        live.send("1001", call_message("call__ringing_inbound.json", call_id, french_mobile()))
        wait_until(lambda: stored(call_id), timeout=15)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.decode()
    assert proc.returncode == 0, text
    assert "listener.kavkom.stopping signal=SIGTERM" in text
    assert "listener.kavkom.stopped" in text
    assert "result=webhook.accepted" in text
    assert REFRESH not in text
    assert not any(token in text for token in live.issued)
    assert not live.connections("1001")  # closed, not left to time out


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        ("KAVKOM_REFRESH_TOKEN", "KAVKOM_REFRESH_TOKEN"),
        ("KAVKOM_LISTEN_EXTENSIONS", "KAVKOM_LISTEN_EXTENSIONS"),
    ],
)
def test_listen_refuses_to_start_without_its_settings(unset: str, named: str) -> None:
    environment = Environment()
    environment.set(
        {"KAVKOM_REFRESH_TOKEN": REFRESH, "KAVKOM_LISTEN_EXTENSIONS": "1001", unset: None}
    )
    try:
        result = CliRunner().invoke(listen, ["kavkom"])
    finally:
        environment.restore()
    assert result.exit_code == 1
    assert named in result.output
    assert REFRESH not in result.output
