"""UIS click-to-call: the JSON-RPC request UIS receives, limits, and the errors agents read.

The real client talks HTTP to ``FakeUis`` (tests/platforms/uis/fake_api.py). The client's
``sleep`` is a recorder, so a test sees how long the client chose to wait without waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.platforms.uis.fake_api import FakeUis, RpcError
from worker.telephony.base import ClickToCallError
from worker.telephony.uis import UisClickToCall

TOKEN = "2fRN4g217ca0b4224a67988aff3e584f91964a692045415f36fa66146f5a3c1ae1f6093d"
# "Вызов на сотрудника", request example: virtual number, contact, employee id.
VIRTUAL = "74993720692"
CONTACT = "+79260000000"
EMPLOYEE = "25"


@pytest.fixture
def fake() -> Iterator[FakeUis]:
    with FakeUis(access_token=TOKEN, virtual_numbers=[VIRTUAL]) as fake:
        fake.add_employee(25)
        yield fake


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def uis(fake: FakeUis, waits: list[float]) -> Iterator[UisClickToCall]:
    client = UisClickToCall(
        access_token=TOKEN,
        virtual_phone_number="+" + VIRTUAL,
        base_url=fake.url,
        sleep=waits.append,
    )
    yield client
    client.close()


def refused(client: UisClickToCall, agent: str = EMPLOYEE, to: str = CONTACT) -> ClickToCallError:
    with pytest.raises(ClickToCallError) as caught:
        client.place_call(agent, to)
    assert TOKEN not in caught.value.message
    return caught.value


def test_start_employee_call_rings_the_employee_first(fake: FakeUis, uis: UisClickToCall) -> None:
    placed = uis.place_call(EMPLOYEE, CONTACT)

    (request,) = fake.requests()
    assert (request["method"], request["path"]) == ("POST", "/v4.0")
    assert request["headers"]["Content-Type"] == "application/json; charset=UTF-8"
    sent = request["json"]
    assert (sent["jsonrpc"], sent["method"]) == ("2.0", "start.employee_call")
    assert sent["id"]
    assert sent["params"] == {
        "access_token": TOKEN,
        "first_call": "employee",
        "virtual_phone_number": VIRTUAL,
        "contact": "79260000000",  # E.164 digits, as the method's doc writes them
        "employee": {"id": 25},
    }
    assert (placed.platform, placed.call_id) == ("uis", "237859081")
    assert placed.raw["metadata"]["limits"]["minute_remaining"] == 149


def test_a_short_minute_limit_is_waited_out_once(
    fake: FakeUis, uis: UisClickToCall, waits: list[float]
) -> None:
    fake.limit_next("minute", reset_s=3)

    placed = uis.place_call(EMPLOYEE, CONTACT)

    assert waits == [3.0]  # minute_reset from the error's metadata
    assert [r["json"]["params"]["contact"] for r in fake.requests()] == ["79260000000"] * 2
    assert placed.call_id == "237859081"
    assert len(fake.calls) == 1


def test_a_long_wait_is_left_to_the_caller(
    fake: FakeUis, uis: UisClickToCall, waits: list[float]
) -> None:
    fake.limit_next("minute", reset_s=40)
    error = refused(uis)
    assert (error.code, error.retryable, error.retry_after) == ("limit_exceeded", True, 40.0)
    assert (
        error.message
        == "callhook has used up its UIS Call API allowance per minute; try again in 40 s."
    )
    assert waits == []
    assert len(fake.requests()) == 1


def test_a_daily_limit_reports_the_days_reset(fake: FakeUis, uis: UisClickToCall) -> None:
    fake.limit_next("day", reset_s=5400)
    error = refused(uis)
    assert (error.retryable, error.retry_after) == (True, 5400.0)
    assert "per day" in error.message


def test_the_limit_is_retried_only_once(
    fake: FakeUis, uis: UisClickToCall, waits: list[float]
) -> None:
    fake.limit_next("minute", reset_s=2, count=2)
    error = refused(uis)
    assert (error.code, error.retry_after) == ("limit_exceeded", 2.0)
    assert waits == [2.0]
    assert len(fake.requests()) == 2


# Mnemonics: Call API docs, "List of errors common for all methods"; the method's own list in
# "Вызов на сотрудника" (employee_not_found, no_active_phone_number, contact_in_blacklist).
@pytest.mark.parametrize(
    ("arrange", "agent", "mnemonic", "reads"),
    [
        (lambda f: f.set_token(TOKEN, "expired"), EMPLOYEE, "access_token_expired", "expired"),
        (lambda f: f.set_token(TOKEN, "blocked"), EMPLOYEE, "access_token_blocked", "blocked"),
        (
            lambda f: setattr(f, "whitelisted_ips", {"10.0.0.1"}),
            EMPLOYEE,
            "ip_not_whitelisted",
            "IP whitelist",
        ),
        (lambda f: None, "26", "employee_not_found", "does not know employee 26"),
        (
            lambda f: f.add_employee(27, []),
            "27",
            "no_active_phone_number",
            "no active phone number",
        ),
        (lambda f: f.blacklist.add("79260000000"), EMPLOYEE, "contact_in_blacklist", "blacklist"),
    ],
)
def test_uis_refusals_read_as_what_to_do(
    fake: FakeUis,
    uis: UisClickToCall,
    arrange: Callable[[FakeUis], object],
    agent: str,
    mnemonic: str,
    reads: str,
) -> None:
    arrange(fake)
    error = refused(uis, agent=agent)
    assert (error.code, error.retryable) == (mnemonic, False)
    assert reads in error.message


def test_a_caller_number_not_on_the_account_names_it(fake: FakeUis) -> None:
    client = UisClickToCall(
        access_token=TOKEN, virtual_phone_number="74950000000", base_url=fake.url
    )
    error = refused(client)
    client.close()
    assert error.code == "virtual_phone_number_not_found"
    assert "+74950000000" in error.message


def test_calling_an_own_virtual_number_is_explained(uis: UisClickToCall) -> None:
    error = refused(uis, to="+" + VIRTUAL)
    assert error.code == "own_virtual_phone_number_not_allowed"


def test_a_parameter_error_names_the_field_but_never_echoes_the_value(
    fake: FakeUis, uis: UisClickToCall
) -> None:
    # Call API docs, "Error messages": `value` "contains information transmitted by a client".
    fake.fail_next(
        RpcError(
            -32602,
            "Data supplied is of wrong type",
            "data_type_error",
            field="access_token",
            value=TOKEN,
        )
    )
    error = refused(uis)
    assert error.code == "data_type_error"
    assert "(parameter access_token)" in error.message
    assert "callhook problem" in error.message


def test_an_unknown_mnemonic_falls_back_to_its_code_group(
    fake: FakeUis, uis: UisClickToCall
) -> None:
    # -32002, "Groups of error codes": security rules forbid the direction.
    fake.fail_next(RpcError(-32002, "Calls to this direction are forbidden", "direction_forbidden"))
    error = refused(uis)
    assert error.code == "direction_forbidden"
    assert "security rules" in error.message


def test_a_malformed_employee_or_number_sends_nothing(fake: FakeUis, uis: UisClickToCall) -> None:
    assert refused(uis, agent="ivanov").code == "no_agent"
    assert refused(uis, to="89260000000").code == "invalid_destination"
    assert fake.requests() == []


def test_a_gateway_error_in_front_of_uis_may_be_retried(fake: FakeUis, uis: UisClickToCall) -> None:
    fake.fail_next(502)
    error = refused(uis)
    assert (error.status, error.retryable) == (502, True)
