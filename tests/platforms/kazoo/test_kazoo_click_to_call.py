"""KAZOO click-to-call: the connect request, the number KAZOO ends up dialling, the refusals.

The real client talks HTTP to ``FakeKazoo`` (tests/platforms/kazoo/fake_api.py), which
normalizes the contact the way KAZOO's code does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.platforms.kazoo.fake_api import FakeKazoo
from worker.telephony.base import ClickToCallError
from worker.telephony.kazoo import KazooClickToCall

ACCOUNT = uuid.uuid4().hex
TOKEN = "kazoo-auth-token-for-tests"


@pytest.fixture
def fake() -> Iterator[FakeKazoo]:
    with FakeKazoo(account_id=ACCOUNT, auth_token=TOKEN) as fake:
        yield fake


@pytest.fixture
def kazoo(fake: FakeKazoo) -> Iterator[KazooClickToCall]:
    client = KazooClickToCall(base_url=fake.url, account_id=ACCOUNT, auth_token=TOKEN)
    yield client
    client.close()


def refused(client: KazooClickToCall, agent: str, to: str = "+33612345678") -> ClickToCallError:
    with pytest.raises(ClickToCallError) as caught:
        client.place_call(agent, to)
    assert TOKEN not in caught.value.message
    return caught.value


def test_connect_rings_the_agents_endpoint_then_the_contact(
    fake: FakeKazoo, kazoo: KazooClickToCall
) -> None:
    c2c_id = fake.add_c2c("1001")

    placed = kazoo.place_call(c2c_id, "+33612345678")

    (request,) = fake.requests()
    assert request["method"] == "POST"
    assert request["path"] == f"/v2/accounts/{ACCOUNT}/clicktocall/{c2c_id}/connect"
    assert request["query"] == {"contact": "0033612345678"}
    assert request["headers"]["X-Auth-Token"] == TOKEN
    assert request["status"] == 202
    # 2600Hz Click To Call docs, "Non-blocking version": the originate request; the agent's
    # extension first.
    data = placed.raw["data"]
    assert data["endpoints"][0]["route"] == "1001"
    assert data["application_data"]["route"] == "+33612345678"
    assert placed.call_id == data["outbound_call_id"]
    assert (placed.call_id or "").startswith(f"c2c-{c2c_id}-")
    # Crossbar echoes auth_token in its envelope; what callhook keeps must not hold it.
    assert TOKEN not in json.dumps(placed.raw)


@pytest.mark.parametrize(
    "number",
    [
        "+3225551212",  # Brussels: its digits alone look like a North American number
        "+15417543010",
        "+442079460958",
        "+4930123456",
    ],
)
def test_kazoo_dials_the_number_the_agent_clicked(
    fake: FakeKazoo, kazoo: KazooClickToCall, number: str
) -> None:
    c2c_id = fake.add_c2c("1001")
    kazoo.place_call(c2c_id, number)
    assert fake.calls == [{"c2c_id": c2c_id, "extension": "1001", "route": number}]


def test_an_invalid_token_asks_an_administrator_to_renew_it(fake: FakeKazoo) -> None:
    c2c_id = fake.add_c2c("1001")
    client = KazooClickToCall(base_url=fake.url, account_id=ACCOUNT, auth_token="stale-token")
    error = refused(client, c2c_id)
    client.close()
    assert (error.status, error.code, error.retryable) == (401, "invalid_credentials", False)
    assert "renew" in error.message
    assert "stale-token" not in error.message


def test_a_token_for_another_account_is_forbidden(fake: FakeKazoo) -> None:
    client = KazooClickToCall(base_url=fake.url, account_id=uuid.uuid4().hex, auth_token=TOKEN)
    error = refused(client, fake.add_c2c("1001"))
    client.close()
    assert (error.status, error.code) == (403, "forbidden")


def test_an_unknown_endpoint_names_the_id_to_check(kazoo: KazooClickToCall) -> None:
    missing = uuid.uuid4().hex
    error = refused(kazoo, missing)
    assert (error.status, error.code) == (404, "bad_identifier")
    assert missing in error.message


def test_a_number_outside_the_endpoints_whitelist_is_explained(
    fake: FakeKazoo, kazoo: KazooClickToCall
) -> None:
    c2c_id = fake.add_c2c("1001", whitelist=[r"^\+33"])
    error = refused(kazoo, c2c_id, to="+442079460958")
    assert (error.status, error.code) == (400, "whitelist")
    assert "whitelist" in error.message
    assert fake.calls == []


def test_an_invalid_number_or_missing_endpoint_sends_nothing(
    fake: FakeKazoo, kazoo: KazooClickToCall
) -> None:
    assert refused(kazoo, fake.add_c2c("1001"), to="+1").code == "invalid_destination"
    assert refused(kazoo, "").code == "no_agent"
    assert fake.requests() == []


def test_a_failing_kazoo_may_be_retried(fake: FakeKazoo, kazoo: KazooClickToCall) -> None:
    fake.fail_next(503)
    error = refused(kazoo, fake.add_c2c("1001"))
    assert (error.status, error.retryable) == (503, True)


def test_a_public_endpoint_needs_no_token(fake: FakeKazoo) -> None:
    # 2600Hz Click To Call docs, schema: "auth_required" false lets the connect URL be used
    # without a token.
    c2c_id = fake.add_c2c("1001", auth_required=False)
    client = KazooClickToCall(base_url=fake.url, account_id=ACCOUNT)
    client.place_call(c2c_id, "+33612345678")
    client.close()
    assert "X-Auth-Token" not in fake.requests()[0]["headers"]
    assert fake.calls[0]["route"] == "+33612345678"
