"""Kavkom click-to-call: what the PBX receives, and what the agent reads when it refuses.

The real client talks HTTP to ``FakeKavkom`` (tests/platforms/kavkom/fake_api.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.platforms.kavkom.fake_api import CALL_PATH, FakeKavkom
from worker.telephony.base import ClickToCallError
from worker.telephony.kavkom import KavkomClickToCall

TOKEN = "kavkom-api-token-for-tests"
# Kavkom API Documentation (https://help.kavkom.com/en/api-integration/kavkom-api/),
# "Start a call, or click-to-call": the domain_uuid of the curl example.
DOMAIN = "ddcfeb62-110f-4bd7-b7a9-965e1a78295f"


@pytest.fixture
def fake() -> Iterator[FakeKavkom]:
    with FakeKavkom(token=TOKEN, domain_uuid=DOMAIN, extensions=["901", "902"]) as fake:
        yield fake


def client_for(
    url: str, *, auto_answer: bool = False, timeouts: tuple[float, float] = (5.0, 75.0)
) -> KavkomClickToCall:
    return KavkomClickToCall(
        api_token=TOKEN,
        domain_uuid=DOMAIN,
        base_url=url,
        auto_answer=auto_answer,
        timeouts=timeouts,
    )


@pytest.fixture
def kavkom(fake: FakeKavkom) -> Iterator[KavkomClickToCall]:
    client = client_for(fake.url)
    yield client
    client.close()


def refused(
    client: KavkomClickToCall, agent: str = "901", to: str = "+33612345678"
) -> ClickToCallError:
    with pytest.raises(ClickToCallError) as caught:
        client.place_call(agent, to)
    assert TOKEN not in caught.value.message
    return caught.value


def test_the_pbx_is_asked_to_ring_the_extension_then_the_number(
    fake: FakeKavkom, kavkom: KavkomClickToCall
) -> None:
    placed = kavkom.place_call("901", "+33612345678")

    (request,) = fake.requests()
    assert request["method"] == "POST"
    assert request["path"] == CALL_PATH
    assert request["headers"]["X-Api-Token"] == TOKEN
    assert request["headers"]["Content-Type"] == "application/json"
    # The docs' curl example: destination as digits without "+", src the agent's extension.
    assert request["json"] == {"domain_uuid": DOMAIN, "src": "901", "destination": "33612345678"}
    assert placed.platform == "kavkom"
    assert uuid.UUID(placed.call_id or "")
    assert placed.raw["recording"] == "+OK"


def test_auto_answer_is_sent_as_the_seeds_string(fake: FakeKavkom) -> None:
    client = client_for(fake.url, auto_answer=True)
    client.place_call("901", "+442079460958")
    client.close()
    assert fake.requests()[0]["json"]["auto_answer"] == "true"
    assert fake.requests()[0]["json"]["destination"] == "442079460958"


@pytest.mark.parametrize("number", ["0612345678", "+33 6 12 34 56 78", "+3361234", "33612345678"])
def test_a_number_not_in_e164_is_refused_before_any_request(
    fake: FakeKavkom, kavkom: KavkomClickToCall, number: str
) -> None:
    error = refused(kavkom, to=number)
    assert error.code == "invalid_destination"
    assert "international format" in error.message
    assert fake.requests() == []


def test_an_agent_without_extension_is_told_to_ask_an_administrator(
    fake: FakeKavkom, kavkom: KavkomClickToCall
) -> None:
    error = refused(kavkom, agent=" ")
    assert "No Kavkom extension" in error.message
    assert fake.requests() == []


def test_an_unknown_token_is_an_administrators_problem(fake: FakeKavkom) -> None:
    client = KavkomClickToCall(api_token="not-the-token", domain_uuid=DOMAIN, base_url=fake.url)
    error = refused(client)
    client.close()
    assert error.status == 401
    assert not error.retryable
    assert "administrator" in error.message
    assert "not-the-token" not in error.message


def test_a_token_not_linked_to_the_domain_is_refused(fake: FakeKavkom) -> None:
    fake.add_token("other-domain-token", domains={str(uuid.uuid4())}, routes={"active_call/call"})
    client = KavkomClickToCall(
        api_token="other-domain-token", domain_uuid=DOMAIN, base_url=fake.url
    )
    error = refused(client)
    client.close()
    assert (error.status, error.code, error.retryable) == (403, "auth", False)
    assert "domain" in error.message


def test_an_extension_not_on_the_domain_names_the_extension(kavkom: KavkomClickToCall) -> None:
    error = refused(kavkom, agent="999")
    assert (error.status, error.code) == (422, "unknown_extension")
    assert "extension 999" in error.message


@pytest.mark.parametrize(
    ("cause", "reads"),
    [
        ("USER_NOT_REGISTERED", "your phone or softphone is not connected to Kavkom"),
        ("NO_ANSWER", "your phone did not answer"),
        ("SOMETHING_NEW", "the switch rejected it"),
    ],
)
def test_the_switchs_refusal_is_explained(
    fake: FakeKavkom, kavkom: KavkomClickToCall, cause: str, reads: str
) -> None:
    fake.switch_rejects("902", cause)
    error = refused(kavkom, agent="902")
    assert error.message == f"Kavkom did not connect the call: {reads} ({cause})."
    assert (error.status, error.code, error.retryable) == (422, cause, False)


def test_missing_fields_come_back_as_kavkoms_validation_errors(
    fake: FakeKavkom, kavkom: KavkomClickToCall
) -> None:
    # Kavkom docs, "Error codes & troubleshooting / Error format": the PBX API example, verbatim.
    fake.fail_next(
        422,
        {
            "error": True,
            "message": "Model is not valid",
            "validationErrors": {"extension": "The extension field is required."},
        },
    )
    error = refused(kavkom)
    assert error.code == "validation"
    assert "extension: The extension field is required." in error.message


def test_a_server_error_may_be_retried(fake: FakeKavkom, kavkom: KavkomClickToCall) -> None:
    fake.fail_next(503)
    error = refused(kavkom)
    assert (error.status, error.retryable) == (503, True)


def test_too_many_requests_carries_retry_after(fake: FakeKavkom, kavkom: KavkomClickToCall) -> None:
    fake.fail_next(429, retry_after="7")
    error = refused(kavkom)
    assert (error.status, error.retryable, error.retry_after) == (429, True, 7.0)


def test_an_unreachable_pbx_may_be_retried() -> None:
    client = client_for(f"http://127.0.0.1:{free_port()}")
    error = refused(client)
    client.close()
    assert (error.code, error.retryable) == ("unreachable", True)


def test_an_answer_that_comes_too_late_is_not_retried(fake: FakeKavkom) -> None:
    # The PBX placed the call: sending it again would ring the agent twice.
    fake.stall_next(2.0)
    client = client_for(fake.url, timeouts=(2.0, 0.3))
    error = refused(client)
    client.close()
    assert (error.code, error.retryable) == ("outcome_unknown", False)
    assert "check your phone" in error.message
