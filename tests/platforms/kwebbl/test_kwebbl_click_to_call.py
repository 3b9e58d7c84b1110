"""Kwebbl click-to-call: the request Kwebbl receives, token refresh on 401, readable refusals.

The real client talks HTTP to ``FakeKwebbl`` (tests/platforms/kwebbl/fake_api.py). The token
provider is a stand-in for the OAuth storage that is built elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.platforms.kwebbl.fake_api import FakeKwebbl
from worker.telephony.base import ClickToCallError
from worker.telephony.kwebbl import KwebblClickToCall


class Tokens:
    """Hands out the fake's tokens; a forced refresh issues a new one, as a refresh grant does."""

    def __init__(self, fake: FakeKwebbl, owner: str, scope: str = "calls.create"):
        self.fake, self.owner, self.scope = fake, owner, scope
        self.current = fake.issue_token(owner=owner, scope=scope)
        self.asked: list[bool] = []

    def __call__(self, *, force_refresh: bool = False) -> str:
        self.asked.append(force_refresh)
        if force_refresh:
            self.current = self.fake.issue_token(owner=self.owner, scope=self.scope)
        return self.current


@pytest.fixture
def fake() -> Iterator[FakeKwebbl]:
    with FakeKwebbl() as fake:
        yield fake


@pytest.fixture
def agent_id(fake: FakeKwebbl) -> str:
    return fake.add_extension("010")  # Realtime API doc, "Placing a new call": from.number "010".


@pytest.fixture
def tokens(fake: FakeKwebbl, agent_id: str) -> Tokens:
    return Tokens(fake, owner=agent_id)


@pytest.fixture
def kwebbl(fake: FakeKwebbl, tokens: Tokens) -> Iterator[KwebblClickToCall]:
    client = KwebblClickToCall(token_provider=tokens, base_url=fake.url)
    yield client
    client.close()


def refused(client: KwebblClickToCall, agent: str, to: str = "+31203080700") -> ClickToCallError:
    with pytest.raises(ClickToCallError) as caught:
        client.place_call(agent, to)
    return caught.value


def test_the_call_is_placed_from_the_agents_extension(
    fake: FakeKwebbl, kwebbl: KwebblClickToCall, tokens: Tokens, agent_id: str
) -> None:
    placed = kwebbl.place_call(agent_id, "+31203080700")

    (request,) = fake.requests()
    assert (request["method"], request["path"], request["status"]) == ("POST", "/v100/calls", 202)
    assert request["headers"]["Authorization"] == f"Bearer {tokens.current}"
    # The document's example body, with the agent named by extension_id; "to" keeps its "+".
    assert request["json"] == {"from": {"extension_id": agent_id}, "to": {"number": "+31203080700"}}
    # 202 with no body: Kwebbl returns no call id.
    assert (placed.platform, placed.call_id, placed.raw) == ("kwebbl", None, {})


def test_an_internal_number_names_the_agent_too(
    fake: FakeKwebbl, kwebbl: KwebblClickToCall
) -> None:
    kwebbl.place_call("010", "+31203080700")
    assert fake.requests()[0]["json"]["from"] == {"number": "010"}
    assert fake.calls == [{"from": {"number": "010"}, "to": {"number": "+31203080700"}}]


def test_a_white_label_base_url_is_used_as_given() -> None:
    with FakeKwebbl(base_path="/realtime/v100") as fake:
        extension = fake.add_extension("010")
        client = KwebblClickToCall(token_provider=Tokens(fake, extension), base_url=fake.url + "/")
        client.place_call(extension, "+31203080700")
        client.close()
        assert fake.requests()[0]["path"] == "/realtime/v100/calls"


def test_an_expired_token_is_refreshed_once_and_the_call_sent_again(
    fake: FakeKwebbl, kwebbl: KwebblClickToCall, tokens: Tokens, agent_id: str
) -> None:
    stale = tokens.current
    fake.revoke(stale)

    kwebbl.place_call(agent_id, "+31203080700")

    first, second = fake.requests()
    assert (first["status"], second["status"]) == (401, 202)
    assert first["headers"]["Authorization"] == f"Bearer {stale}"
    assert second["headers"]["Authorization"] == f"Bearer {tokens.current}"
    assert tokens.asked == [False, True]
    assert len(fake.calls) == 1


def test_a_refused_refresh_asks_for_kwebbl_to_be_reconnected(
    fake: FakeKwebbl, kwebbl: KwebblClickToCall, tokens: Tokens, agent_id: str
) -> None:
    # Realtime API doc, "Placing a new call": the error object ("message" is optional).
    fake.fail_next(401, {"status_code": 401, "error_code": "invalid_grant"})
    fake.fail_next(401, {"status_code": 401, "error_code": "invalid_grant"})

    error = refused(kwebbl, agent_id)

    assert (error.status, error.code, error.retryable) == (401, "invalid_grant", False)
    assert "reconnect Kwebbl" in error.message
    assert len(fake.requests()) == 2
    assert tokens.asked == [False, True]


def test_a_personal_scope_cannot_call_from_someone_elses_extension(fake: FakeKwebbl) -> None:
    own = fake.add_extension("011")
    colleague = fake.add_extension("012")
    client = KwebblClickToCall(
        token_provider=Tokens(fake, own, scope="calls.create.personal"), base_url=fake.url
    )
    error = refused(client, colleague)
    client.close()
    assert (error.status, error.code) == (403, "access_denied")
    assert "calls.create" in error.message


def test_two_external_numbers_are_refused_with_kwebbls_reason(kwebbl: KwebblClickToCall) -> None:
    error = refused(kwebbl, "+31612345678")
    assert (error.status, error.code) == (400, "validation")
    assert "Creating calls between 2 external numbers is not allowed" in error.message
    assert "extension" in error.message


def test_a_malformed_agent_or_number_sends_nothing(
    fake: FakeKwebbl, kwebbl: KwebblClickToCall, tokens: Tokens, agent_id: str
) -> None:
    assert refused(kwebbl, "alice").code == "no_agent"
    assert refused(kwebbl, agent_id, to="020 308 0700").code == "invalid_destination"
    assert fake.requests() == []
    assert tokens.asked == []


def test_a_token_kwebbl_echoes_back_is_hidden(
    fake: FakeKwebbl, kwebbl: KwebblClickToCall, tokens: Tokens, agent_id: str
) -> None:
    # The document's error object, with a message that (wrongly) quotes the token.
    fake.fail_next(
        400, {"status_code": 400, "error_code": "validation", "message": f"bad {tokens.current}"}
    )
    error = refused(kwebbl, agent_id)
    assert tokens.current not in error.message
    assert "bad [hidden]" in error.message


def test_an_unavailable_kwebbl_may_be_retried(fake: FakeKwebbl, kwebbl: KwebblClickToCall) -> None:
    fake.fail_next(503)
    error = refused(kwebbl, "010")
    assert (error.status, error.retryable) == (503, True)
