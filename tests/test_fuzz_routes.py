"""Property-based fuzzing of every HTTP route (Hypothesis), against the real app and stack.

Properties, for whatever arrives:

- the answer is 2xx, 3xx or 4xx, never 5xx, and the app never raises (the test client
  runs with TESTING, so an exception fails the example with its traceback);
- a refusal says why (a JSON body with `error` and `reason`, or an HTML page for a person);
- a webhook delivery answered 2xx is stored: its `id` names a `webhook_events` row of
  that platform, in the state the answer claims; a refused one that names an `id` is kept
  as `unmapped`; an unauthenticated one leaves no row;
- every accepted event folds: once the worker is done, none is left `failed`.

Webhooks are fuzzed with valid authentication (the secrets of tests/conftest.py, where
each mapping says they travel) so that the deliveries reach the parser and the mapping
engine, in every format their mapping accepts (JSON; forms with `a[b]` keys; GET query
strings). Payloads are the platforms' real fixtures (tests/platforms/<platform>/fixtures)
mutated with hostile values, payloads of any shape built from the keys those fixtures use,
and raw bodies that are not what they claim. Every other route of `app.url_map` (listed at
run time, so a new route is fuzzed without being named here) gets garbage paths, queries,
headers, tokens and bodies, and also a valid agent link so the fuzz reaches past the sign-in.

Profiles: "ci" (the default: few examples, derandomized so a CI failure reproduces, no
example database) and "long" (many examples, a fresh random seed each run):

    HYPOTHESIS_PROFILE=long .venv/bin/pytest -q tests/test_fuzz_routes.py

A failure prints the shrunk example and a `@reproduce_failure` blob to replay it.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import Session, select

from tests.conftest import ROOT, WEBHOOK_SECRETS, wait_until
from webhook_receiver.mapping import PlatformMapping, load_mappings
from webhook_receiver.mapping.payloads import parse_form
from worker.core.db import get_engine
from worker.core.models import EventStatus, WebhookEvent

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_QUIET,
    print_blob=True,
)
settings.register_profile(
    "long", max_examples=1500, deadline=None, suppress_health_check=_QUIET, print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MAPPINGS = load_mappings(ROOT / "mappings").platforms
PLATFORMS = sorted(MAPPINGS)
AGENT_EMAIL = "alice@example.com"  # in the shipped mappings/agents.yaml


# -- the app -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(stack: dict[str, Any]) -> Flask:
    from webhook_receiver.web import create_app

    return create_app({"TESTING": True})


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def agent_token(stack: dict[str, Any]) -> str:
    from worker.core.agent_links import create_link

    return create_link(AGENT_EMAIL)


@pytest.fixture(scope="module")
def operator_token(stack: dict[str, Any]) -> str:
    """A signed-in operator's cookie value: the console's pages are fuzzed past the
    sign-in too, with its filters, forms and ids."""
    from worker.core.agent_links import OPERATOR, create_link

    return create_link("fuzz-ops@example.com", role=OPERATOR)


def _row(event_id: int) -> WebhookEvent | None:
    with Session(get_engine()) as session:
        return session.get(WebhookEvent, event_id)


def _row_count() -> int:
    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(WebhookEvent)).one()


def assert_answered(response: Any) -> None:
    """Never a 5xx; a refusal carries its reason."""
    status = response.status_code
    assert status < 500, (status, response.get_data()[:2000])
    if status >= 400 and response.mimetype == "application/json":
        body = response.get_json()
        assert isinstance(body, dict) and body.get("error") and body.get("reason"), body


def assert_webhook_kept(response: Any, platform: str) -> None:
    """What a webhook answer claims is what the database holds."""
    assert_answered(response)
    body = response.get_json(silent=True)
    assert isinstance(body, dict), response.get_data()[:500]
    status = response.status_code
    event(f"{status} {body.get('status') or body.get('error')}")  # --hypothesis-show-statistics
    if status == 401 or status == 404:
        return
    if 200 <= status < 300:
        row = _row(body["id"])
        assert row is not None and row.platform == platform, body
        expected = {
            "accepted": {EventStatus.PENDING, EventStatus.PROCESSED},
            "ignored": {EventStatus.IGNORED},
            "unmapped": {EventStatus.UNMAPPED},
            "duplicate": set(vars(EventStatus).values()),
        }[body["status"]]
        assert row.status in expected, (body, row.status, row.error)
        if body["status"] == "unmapped":
            assert row.error == body["reason"]
        return
    assert status in (400, 415, 422), body
    row = _row(body["id"])  # an authenticated refusal is kept
    assert row is not None and row.status == EventStatus.UNMAPPED, (body, row)


# -- building deliveries --------------------------------------------------------------------


def _fixtures(platform: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted((ROOT / "tests" / "platforms" / platform / "fixtures").iterdir()):
        raw = path.read_bytes()
        if path.suffix == ".json":
            found.append(json.loads(raw))
        elif path.suffix in (".form", ".query"):
            found.append(parse_form(raw.strip()))
    return found


FIXTURES = {platform: _fixtures(platform) for platform in PLATFORMS}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


KEYS = {
    platform: sorted({k for f in FIXTURES[platform] for k in _keys(f)}) for platform in PLATFORMS
}

HOSTILE_TEXT = [
    "", " ", "null", "None", "{{extension_phone_number}}", '"quoted"', "1e400", "-1e400",
    "1e30", "1e20", "-1", "0", "NaN", "Infinity", "١٢٣", "²", "9" * 5000, "1" * 40,
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2200-01-01T00:00:00Z",
    "1970-01-01 00:00:00", "99:99:1e400", "00:00:00", "+33612345678", "0033612345678",
    "anonymous", "a" * 300, "x@" + "y" * 250, "\x00", "\u2028", "\ud7ff", "true", "false",
    "[]", "{}", '{"a": ' * 50 + "1" + "}" * 50, "CHANNEL_CREATE", "channel_destroy",
]  # fmt: skip

HOSTILE = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=-5, max_value=5) | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(min_value=-5, max_value=5), max_size=3),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@st.composite
def mutated_fixture(draw: st.DrawFn, platform: str) -> dict[str, Any]:
    """A real payload of `platform` with a few values replaced, removed or added."""
    payload = json.loads(json.dumps(draw(st.sampled_from(FIXTURES[platform]))))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        path = draw(st.sampled_from(list(_paths(payload))[1:] or [()]))
        if not path:
            break
        parent: Any = payload
        for step in path[:-1]:
            parent = parent[step]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(HOSTILE)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS[platform]) | st.text(max_size=8))] = draw(HOSTILE)
    return payload


def any_shape(platform: str) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads of any shape, using the keys `platform` really sends so that rules match."""
    keys = st.sampled_from(KEYS[platform]) | st.text(max_size=8)
    values = st.recursive(
        HOSTILE,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=20,
    )
    return st.dictionaries(keys, values, max_size=12)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A payload as form fields with `a[b]` / `a[]` keys, as KAZOO and UIS send them."""
    if isinstance(value, dict):
        if not value and prefix:
            return [(prefix, "")]
        return [
            pair
            for key, child in value.items()
            for pair in flatten(child, f"{prefix}[{key}]" if prefix else str(key))
        ]
    if isinstance(value, list):
        return [pair for child in value for pair in flatten(child, f"{prefix}[]")]
    return [(prefix, _text(value))]


def _credentials(mapping: PlatformMapping, secret: str | None) -> tuple[dict[str, str], list]:
    """(headers, query pairs) presenting `secret` where the mapping says it travels."""
    auth = mapping.auth
    if secret is None:
        return {}, []
    if auth.location == "header":
        assert auth.header is not None
        return {auth.header: f"{auth.scheme} {secret}" if auth.scheme else secret}, []
    assert auth.location == "query" and auth.param is not None
    return {}, [(auth.param, secret)]


def deliver(client: FlaskClient, platform: str, payload: dict[str, Any], fmt: str) -> Any:
    mapping = MAPPINGS[platform]
    headers, auth_pairs = _credentials(mapping, WEBHOOK_SECRETS[platform])
    url = f"/webhooks/{platform}"
    if fmt == "query":
        query = urlencode(auth_pairs + flatten(payload))
        return client.get(f"{url}?{query}", headers=headers)
    if auth_pairs:
        url += "?" + urlencode(auth_pairs)
    if fmt == "json":
        data = json.dumps(payload).encode()  # NaN and Infinity included, as a bad sender would
        return client.post(url, data=data, content_type="application/json", headers=headers)
    data = urlencode(flatten(payload)).encode()
    return client.post(
        url, data=data, content_type="application/x-www-form-urlencoded", headers=headers
    )


# -- webhooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_mutated_real_payloads_are_answered_and_kept(client: FlaskClient, platform: str) -> None:
    accept = MAPPINGS[platform].accept

    @given(payload=mutated_fixture(platform), fmt=st.sampled_from(accept))
    def check(payload: dict[str, Any], fmt: str) -> None:
        assert_webhook_kept(deliver(client, platform, payload, fmt), platform)

    check()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_payloads_of_any_shape_are_answered_and_kept(client: FlaskClient, platform: str) -> None:
    accept = MAPPINGS[platform].accept

    @given(payload=any_shape(platform), fmt=st.sampled_from(accept))
    def check(payload: dict[str, Any], fmt: str) -> None:
        assert_webhook_kept(deliver(client, platform, payload, fmt), platform)

    check()


CONTENT_TYPES = [
    "application/json", "application/json; charset=latin-1", "application/vnd.kazoo+json",
    "text/json", "application/x-www-form-urlencoded", "text/plain", "text/html",
    "multipart/form-data; boundary=x", "application/octet-stream", "", "*/*", "json",
]  # fmt: skip


@st.composite
def raw_body(draw: st.DrawFn, platform: str) -> bytes:
    """Bytes that are not quite what they claim: cut, deep, huge, binary, or nearly JSON."""
    real = json.dumps(draw(st.sampled_from(FIXTURES[platform]))).encode()
    depth = draw(st.integers(min_value=1, max_value=3000))
    return draw(
        st.sampled_from(
            [
                real[: draw(st.integers(min_value=0, max_value=len(real)))],
                b"[" * depth + b"]" * depth,
                b'{"a":' * depth + b"1" + b"}" * depth,
                b"a" + b"[a]" * depth + b"=1",
                b"&".join([b"k[]=1"] * depth),
                b'{"n": ' + b"9" * depth + b"}",
                real.replace(b"}", b', "x": NaN}', 1),
                real.replace(b"}", b', "x": 1e400}', 1),
                b"\xff\xfe" + real,
                b"\xef\xbb\xbf" + real,
            ]
        )
        | st.binary(max_size=200)
        | st.text(max_size=200).map(str.encode)
    )


@pytest.mark.parametrize("platform", PLATFORMS)
def test_raw_bodies_and_content_types_are_answered_and_kept(
    client: FlaskClient, platform: str
) -> None:
    mapping = MAPPINGS[platform]

    @given(
        body=raw_body(platform),
        content_type=st.sampled_from(CONTENT_TYPES),
        method=st.sampled_from(["POST", "POST", "GET"]),
        secret=st.sampled_from([WEBHOOK_SECRETS[platform], None, "wrong", ""]),
    )
    def check(body: bytes, content_type: str, method: str, secret: str | None) -> None:
        headers, pairs = _credentials(mapping, secret)
        url = f"/webhooks/{platform}" + ("?" + urlencode(pairs) if pairs else "")
        before = _row_count()
        response = client.open(
            url, method=method, data=body, headers={**headers, "Content-Type": content_type}
        )
        assert_webhook_kept(response, platform)
        if response.status_code == 401:
            assert _row_count() == before  # refused unauthenticated: nothing stored

    check()


# -- every other route ----------------------------------------------------------------------

GARBAGE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(HOSTILE_TEXT),
    st.text(alphabet=string.printable, min_size=200, max_size=300),
)


def _routes(app: Flask) -> list[tuple[str, str]]:
    return sorted(
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    )


def _fill(rule: str, values: list[str]) -> str:
    """The rule's URL with each `<converter:name>` replaced by a (quoted) garbage value."""
    out, rest = "", rule
    for value in values:
        if "<" not in rest:
            break
        head, _, tail = rest.partition("<")
        _, _, rest = tail.partition(">")
        out += head + quote(value, safe="/")
    return out + rest


def test_every_route_is_fuzzed(app: Flask) -> None:
    """The routes fuzzed below are the app's own list: a new one is fuzzed by itself."""
    routes = _routes(app)
    assert ("/webhooks/<platform>", "POST") in routes
    assert {"/agent/call", "/agent/contact", "/dry-run", "/call", "/hubspot/widget/me"} <= {
        rule for rule, _ in routes
    }
    assert any(rule.startswith("/connect/kwebbl") for rule, _ in routes)


COOKIES = ["callhook_kwebbl_state", "callhook_operator", "session"]


def test_any_route_with_garbage(  # type: ignore[no-untyped-def]
    app: Flask, client: FlaskClient, agent_token: str, operator_token: str
) -> None:
    """Each route on its own, so that every one gets its share of examples."""
    for rule, own_method in _routes(app):
        fuzz_route(client, agent_token, operator_token, rule, own_method)


# The console's query and form fields (calls filters, sandbox, agents' forms).
CONSOLE_FIELDS = ["platform", "direction", "number", "agent", "status", "from", "to",
                  "before", "after", "event", "format", "payload", "reason", "email"]  # fmt: skip


def fuzz_route(  # type: ignore[no-untyped-def]
    client: FlaskClient, agent_token: str, operator_token: str, rule: str, own_method: str
) -> None:
    @given(
        # Mostly the route's own method, so the fuzz gets past the 405.
        method=st.sampled_from([own_method] * 4 + ["GET", "POST", "PUT", "DELETE"]),
        path_values=st.lists(GARBAGE, min_size=2, max_size=2),
        query=st.lists(
            st.tuples(
                st.sampled_from(["k", "to", "limit", "state", "code", "error", "last"])
                | st.sampled_from(CONSOLE_FIELDS)
                | st.text(max_size=5),
                GARBAGE,
            ),
            max_size=4,
        ),
        token=st.sampled_from(["none", "garbage", "valid", "valid"]),
        garbage_token=GARBAGE,
        content_type=st.sampled_from(["application/json"] * 4 + CONTENT_TYPES),
        body=st.one_of(
            st.binary(max_size=100),
            st.dictionaries(
                st.sampled_from(["to", "number", "k", "token"]) | st.text(max_size=5),
                HOSTILE,
                max_size=3,
            ).map(lambda d: json.dumps(d).encode()),
            st.just(b'{"to": "+33 6 12 34 56 78", "number": "0612345678"}'),
            st.just(b"to=%2B33612345678&number=0612345678"),
            st.dictionaries(st.sampled_from(CONSOLE_FIELDS), GARBAGE, max_size=4).map(
                lambda d: urlencode(d).encode()
            ),
        ),
        cookie=st.none() | st.tuples(st.sampled_from(COOKIES), GARBAGE),
        operator=st.booleans(),
    )
    def check(
        method: str,
        path_values: list[str],
        query: list[tuple[str, str]],
        token: str,
        garbage_token: str,
        content_type: str,
        body: bytes,
        cookie: tuple[str, str] | None,
        operator: bool,
    ) -> None:
        headers = {"Content-Type": content_type}
        if token != "none":
            value = agent_token if token == "valid" else garbage_token
            # A header carries latin-1 text without line breaks: what HTTP can carry at all.
            header = value.encode("utf-8", "replace").decode("latin-1")
            headers["X-Callhook-Agent"] = header.replace("\r", " ").replace("\n", " ")
            query = [*query, ("k", value)]
        cookies = [f"callhook_operator={operator_token}"] if operator else []
        if cookie is not None:
            cookies.append(f"{cookie[0]}={quote(cookie[1])}")
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        url = _fill(rule, path_values) + "?" + urlencode(query)
        response = client.open(url, method=method, data=body, headers=headers)
        event(f"{response.status_code}")  # --hypothesis-show-statistics
        try:
            assert response.status_code < 500, (method, url[:300])
            assert_answered(response)
        finally:
            response.close()  # an agent stream holds a slot until closed

    check()


# -- after the fuzz -----------------------------------------------------------------------------


def test_every_accepted_event_folds(client: FlaskClient) -> None:
    """Once the worker has caught up, no accepted delivery was left failed (or pending)."""

    def pending() -> int:
        with Session(get_engine()) as session:
            stmt = select(func.count()).where(WebhookEvent.status == EventStatus.PENDING)
            return session.exec(stmt).one()

    wait_until(lambda: pending() == 0, timeout=90, interval=0.5)
    with Session(get_engine()) as session:
        failed = session.exec(
            select(WebhookEvent).where(WebhookEvent.status == EventStatus.FAILED)
        ).all()
    assert not failed, [(e.id, e.error, e.body[:300]) for e in failed]
    assert client.get("/healthz").status_code == 200  # and the app still answers
