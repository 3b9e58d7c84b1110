"""Hostile input at the door: every bound answers a 4xx (or a kept 200 "unmapped") with its
reason, never a 500, never a row the worker could not fold, never a silently cut body.

Three layers, each tested where it acts:

- the body's size, whatever its framing (`webhook_receiver.web.body_limit`): through Flask's test
  client, through werkzeug's real HTTP server and through gunicorn, each with a real
  `Transfer-Encoding: chunked` request;
- parsing (`webhook_receiver.mapping.payloads`): depth, field count, number size, NaN/Infinity. An
  authenticated delivery past a bound is refused with 400 and kept as `unmapped`; an
  unauthenticated one is refused (401) and not stored;
- values (`worker.core.events.CallEvent`, `webhook_receiver.mapping.transforms`): durations,
  epochs, times, text lengths of bounded columns, objects where a value belongs. A
  mapping failure: kept as `unmapped` and answered as the file's `on_unmapped` says.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func
from sqlmodel import Session, select
from werkzeug.test import EnvironBuilder

from tests.conftest import (
    KAVKOM_SECRET,
    ROOT,
    WEBHOOK_SECRETS,
    Environment,
    LiveServer,
    free_port,
    load_fixture,
    wait_until,
)
from tests.unmapped import assert_kept_unmapped, stored
from webhook_receiver.mapping import MappingError, PlatformMapping, map_payload
from webhook_receiver.mapping.payloads import MAX_DEPTH, BadPayload, parse_form, parse_json
from worker.core.db import get_engine
from worker.core.models import EventStatus, WebhookEvent

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}
KAZOO = f"/webhooks/kazoo?token={WEBHOOK_SECRETS['kazoo']}"
FORM = "application/x-www-form-urlencoded"


def cdr(**changes: Any) -> dict[str, Any]:
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload.update(changes)
    return payload


def row_count() -> int:
    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(WebhookEvent)).one()


# -- parsing: 400 with the reason, kept when authenticated --------------------------------------

HOSTILE_JSON = {
    "array nested 100k deep": ("[" * 100_000 + "]" * 100_000, "nested more than 32 levels"),
    "object nested 100k deep": ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested more than 32"),
    "a 5,000-digit integer": ('{"event": "cdr", "duration": ' + "9" * 5000 + "}", "30 digits"),
    "Infinity": ('{"event": "cdr", "duration": Infinity}', "Infinity is not a JSON number"),
    "-Infinity": ('{"event": "cdr", "duration": -Infinity}', "-Infinity is not a JSON number"),
    "NaN": ('{"event": "cdr", "duration": NaN}', "NaN is not a JSON number"),
    "1e400": ('{"event": "cdr", "duration": 1e400}', "'1e400' in the body is too large"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_hostile_json_is_refused_400_and_kept(client, name: str) -> None:  # type: ignore[no-untyped-def]
    body, reason = HOSTILE_JSON[name]
    response = client.post("/webhooks/kavkom", data=body, content_type="application/json",
                           headers=AUTH)  # fmt: skip
    assert response.status_code == 400, response.get_data()[:300]
    assert response.json["error"] == "bad_body"
    assert reason in response.json["reason"]
    row = stored(response.json["id"])
    assert (row.status, row.error) == (EventStatus.UNMAPPED, response.json["reason"])
    assert row.body == body  # all of it, for the operator to see


def test_hostile_json_without_credentials_is_refused_and_not_stored(client) -> None:  # type: ignore[no-untyped-def]
    before = row_count()
    for body, _ in HOSTILE_JSON.values():
        response = client.post("/webhooks/kavkom", data=body, content_type="application/json")
        assert response.status_code == 401
    assert row_count() == before


HOSTILE_FORMS = {
    "a key nested 5,000 deep": ("a" + "[a]" * 5000 + "=1", "nested more than 32 levels"),
    "a list key nested 5,000 deep": ("a" + "[]" * 5000 + "=1", "nested more than 32 levels"),
    "one key repeated 5,000 times": ("&".join(["a[]=1"] * 5000), "more than 1000 fields"),
    "5,000 fields": ("&".join(f"k{i}=1" for i in range(5000)), "more than 1000 fields"),
    "a key that is both a value and an object": ("a=1&a[b]=2", "mixes list and object"),
    # PostgreSQL's text columns refuse U+0000: kept, but as U+FFFD (see the test below).
    "a raw NUL byte": ("call_id=1\x00", "body contains a NUL byte"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FORMS))
def test_hostile_forms_are_refused_400_and_kept(client, name: str) -> None:  # type: ignore[no-untyped-def]
    body, reason = HOSTILE_FORMS[name]
    response = client.post(KAZOO, data=body, content_type=FORM)
    assert response.status_code == 400, response.get_data()[:300]
    assert reason in response.json["reason"]
    assert len(response.json["reason"]) < 200  # names the key, does not echo it whole
    row = stored(response.json["id"])
    assert row.status == EventStatus.UNMAPPED
    assert row.body == body.replace("\x00", "\ufffd")


def test_a_query_string_of_5000_fields_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    query = "&".join(f"k{i}=1" for i in range(5000))
    response = client.get(f"{KAZOO}&{query}")
    assert response.status_code == 400
    assert response.json["reason"] == "more than 1000 fields"
    row = stored(response.json["id"])
    # The query could not be read, so the secret could not be cut out of it: none is stored.
    assert row.query == "" and WEBHOOK_SECRETS["kazoo"] not in row.body


def test_parser_bounds_sit_above_every_real_payload() -> None:
    for platform in ("kavkom", "kwebbl", "kazoo", "uis", "voximplant"):
        for path in (ROOT / "tests" / "platforms" / platform / "fixtures").iterdir():
            if path.suffix == ".json":
                parse_json(path.read_bytes())
            elif path.suffix in (".form", ".query"):
                parse_form(path.read_bytes().strip())
    # The object, 30 lists, the innermost object: 32 levels, the most a payload may have.
    deepest = "[" * (MAX_DEPTH - 2) + "{}" + "]" * (MAX_DEPTH - 2)
    assert parse_json(f'{{"a": {deepest}}}'.encode())
    with pytest.raises(BadPayload, match="nested more than 32"):
        parse_json(f'{{"a": [{deepest}]}}'.encode())


# -- values: a mapping failure, kept -------------------------------------------------------------


def test_a_month_long_duration_is_unmapped_not_stuck_in_the_worker(client) -> None:  # type: ignore[no-untyped-def]
    # Before: accepted, then the fold failed on every try (OverflowError into INTEGER).
    response = client.post("/webhooks/kavkom", json=cdr(callUuid="b-1", duration=1e30),
                           headers=AUTH)  # fmt: skip
    row = assert_kept_unmapped(response, "cdr: duration_s: Input should be less than or equal")
    assert row.status != EventStatus.PENDING


VALUE_CASES = {
    "an epoch of 1e20": (
        {"event": "call", "data": {"callUuid": "b-2", "state": "ringing", "createdEpoch": 1e20}},
        "websocket call: started_at: timestamp out of range: 1e+20",
    ),
    "an epoch in 2200": (
        {"event": "call", "data": {"callUuid": "b-3", "state": "ringing",
                                   "createdEpoch": 7_258_118_400}},
        "websocket call: started_at: Value error, 2200-01-01T00:00:00+00:00 is outside",
    ),
    "a negative duration": (cdr(callUuid="b-4", duration=-5), "cdr: duration_s: negative"),
    "a duration of 1e308 s": (cdr(callUuid="b-5", duration="1e308"), "cdr: duration_s: Input"),
    "an agent of 500 characters": (
        cdr(callUuid="b-6", presenceId="7" * 500),
        "cdr: agent: String should have at most 200 characters",
    ),
    "a call id of 500 characters": (cdr(callUuid="c" * 500), "cdr: call_id: String should"),
    "a call id that is an object": (cdr(callUuid={"id": 1}), "cdr: call_id: callUuid is an"),
    "a number that is a list": (cdr(callUuid="b-7", number=["1"]), "cdr: external_number: number"),
    "an agent with a NUL character": (
        cdr(callUuid="b-8", presenceId="10\x0001"),
        "cdr: agent: Value error, contains a NUL character",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(VALUE_CASES))
def test_values_out_of_bounds_are_kept_unmapped_with_the_field(client, name: str) -> None:  # type: ignore[no-untyped-def]
    payload, reason = VALUE_CASES[name]
    response = client.post("/webhooks/kavkom", json=payload, headers=AUTH)
    assert_kept_unmapped(response, reason)


def test_kazoo_form_values_past_their_columns_are_unmapped(client) -> None:  # type: ignore[no-untyped-def]
    body = load_fixture("kazoo", "channel_destroy__inbound_customer_leg.form").decode().strip()
    fields = dict(parse_form(body.encode()))
    assert "hangup_cause" in fields and "duration_seconds" in fields
    too_long = body.replace(f"hangup_cause={fields['hangup_cause']}", "hangup_cause=" + "X" * 300)
    response = client.post(KAZOO, data=too_long, content_type=FORM)
    assert_kept_unmapped(response, "customer leg from the PSTN: hangup_cause: String should")
    huge = body.replace(f"duration_seconds={fields['duration_seconds']}", "duration_seconds=1e400")
    response = client.post(KAZOO, data=huge, content_type=FORM)
    assert_kept_unmapped(response, "customer leg from the PSTN: duration_s: expected a finite")


DEMO = """
kind: platform
platform: demo
auth: {location: none}
events:
  - fields:
      call_id: id
      stage: {value: cdr}
      occurred_at: {path: iso, type: iso8601}
      started_at: {path: stamp, type: datetime, format: "%Y-%m-%d %H:%M:%S%z"}
      answered_at: {path: ms, type: epoch_ms}
      ended_at: {path: greg, type: gregorian_s}
      talk_s: {path: hms, type: hms}
      duration_s: {path: minutes, type: minutes}
      variables: {path: blob, json_text: true}
"""


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("iso", "9999-12-31T23:59:59-01:00", "occurred_at: time out of range"),
        ("iso", "0001-01-01T00:00:00+01:00", "occurred_at: time out of range"),
        ("iso", "1970-01-01T00:00:00Z", "occurred_at: Value error, 1970-01-01T00:00:00+00:00"),
        ("stamp", "9999-12-31 23:59:59-0100", "started_at: time out of range"),
        ("ms", "1e400", "answered_at: expected a finite number"),
        ("ms", 10**25, "answered_at: timestamp out of range"),
        ("greg", -1e300, "ended_at: not a timestamp"),
        ("hms", "1e400:00", "talk_s: not a duration"),
        ("hms", "1e300:1e300:1e300", "talk_s: Input should be less than or equal to"),
        ("minutes", 1e307, "duration_s: duration out of range"),
        ("minutes", "nan", "duration_s: expected a finite number"),
        ("blob", "[" * 5000 + "]" * 5000, "variables: blob: not JSON text"),
        ("blob", '{"a": NaN}', "variables: blob: not JSON text"),
    ],
)
def test_every_transform_refuses_what_a_datetime_or_int_cannot_hold(
    field: str, value: Any, reason: str
) -> None:
    mapping = PlatformMapping.model_validate(yaml.safe_load(DEMO))
    with pytest.raises(MappingError) as refused:
        map_payload(mapping, {"id": "x", field: value}, default_region="FR")
    assert str(refused.value).startswith(f"events[0]: {reason}"), str(refused.value)


# -- body size, whatever the framing ---------------------------------------------------------------

LIMIT = 4096


@pytest.fixture
def small_limit(stack: dict[str, Any]) -> Iterator[None]:
    env = Environment()
    env.set({"MAX_BODY_BYTES": str(LIMIT)})
    yield
    env.restore()


def padded(size: int, tag: str) -> bytes:
    """A valid Kavkom CDR of exactly `size` bytes (a custom variable pads it)."""
    payload = cdr(callUuid=f"{tag}-{size}", pad="")
    bare = len(json.dumps(payload).encode())
    payload["pad"] = "x" * (size - bare)
    body = json.dumps(payload).encode()
    assert len(body) == size
    return body


class CountingStream(io.RawIOBase):
    """An endless body, as a client that never stops sending; counts what was read of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        buffer[:] = b"x" * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def test_a_chunked_body_over_the_limit_is_413_through_the_test_client(small_limit) -> None:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    client = create_app({"TESTING": True}).test_client()
    chunked = {"wsgi.input_terminated": True}  # what a server that decodes chunks sets

    def post(body: bytes):  # type: ignore[no-untyped-def]
        return client.post("/webhooks/kavkom", input_stream=io.BytesIO(body),
                           content_type="application/json", environ_overrides=chunked,
                           headers={**AUTH, "Transfer-Encoding": "chunked"})  # fmt: skip

    # Before: the body was cut at the limit and accepted (200), its tail lost.
    over = post(padded(LIMIT + 1, "client"))
    assert (over.status_code, over.json["error"]) == (413, "too_large")
    at = post(padded(LIMIT, "client"))
    assert at.status_code == 200 and at.json["status"] == "accepted"
    assert len(stored(at.json["id"]).body) == LIMIT  # all of it


def test_an_endless_body_is_read_one_byte_past_the_limit_and_no_further(small_limit) -> None:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    app = create_app()
    for framing in ({"HTTP_TRANSFER_ENCODING": "chunked"}, {"wsgi.input_terminated": True}):
        stream = CountingStream()
        environ = EnvironBuilder("/webhooks/kavkom", method="POST", headers=AUTH,
                                 content_type="application/json").get_environ()  # fmt: skip
        environ.pop("CONTENT_LENGTH", None)
        environ.update(framing, **{"wsgi.input": stream})
        started: list[str] = []

        def start_response(status: str, headers: Any, *_: Any, seen: list[str] = started) -> None:
            seen.append(status)

        body = b"".join(app(environ, start_response))  # type: ignore[arg-type]
        assert started == ["413 Request Entity Too Large"], framing
        assert json.loads(body) == {"error": "too_large", "reason": f"body over {LIMIT} bytes"}
        assert stream.read_bytes == LIMIT + 1, framing


def test_a_content_length_over_the_limit_is_413_before_anything_is_read(small_limit) -> None:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    client = create_app().test_client()

    def post(length: str):  # type: ignore[no-untyped-def]
        return client.post("/webhooks/kavkom", data=b"{}", content_type="application/json",
                           headers=AUTH, environ_overrides={"CONTENT_LENGTH": length})  # fmt: skip

    for length in (str(LIMIT + 1), "9" * 5000):
        response = post(length)
        assert (response.status_code, response.json["error"]) == (413, "too_large")
    bad = post("x1")
    assert (bad.status_code, bad.json["reason"]) == (400, "Content-Length is not a number")


def chunked_post(base_url: str, body: bytes, piece: int = 1000) -> tuple[int, dict[str, Any]]:
    """POST `body` with `Transfer-Encoding: chunked` and no Content-Length, over a socket."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        chunks = (body[i : i + piece] for i in range(0, len(body), piece))
        conn.request("POST", "/webhooks/kavkom", body=chunks, encode_chunked=True,
                     headers={**AUTH, "Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def check_chunked_server(base_url: str, tag: str) -> None:
    status, body = chunked_post(base_url, padded(LIMIT + 1, tag))
    assert (status, body["error"]) == (413, "too_large")
    status, body = chunked_post(base_url, padded(LIMIT, tag))
    assert (status, body["status"]) == (200, "accepted")
    row = stored(body["id"])
    assert len(row.body) == LIMIT and json.loads(row.body)["callUuid"] == f"{tag}-{LIMIT}"
    status, body = chunked_post(base_url, padded(LIMIT + 50_000, tag), piece=4096)
    assert (status, body["error"]) == (413, "too_large")


def test_chunked_bodies_over_werkzeug_http_server(small_limit) -> None:  # type: ignore[no-untyped-def]
    server = LiveServer()
    try:
        check_chunked_server(server.url, "werkzeug")
    finally:
        server.close()


def test_chunked_bodies_over_gunicorn(small_limit, stack: dict[str, Any], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**os.environ, "MAX_BODY_BYTES": str(LIMIT), "WEB_CONCURRENCY": "1", "WEB_THREADS": "4"}
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:webhook_receiver.web.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", "webhook_receiver.web:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), timeout=30)
        check_chunked_server(url, "gunicorn")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _answers(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()
