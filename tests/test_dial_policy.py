"""Click-to-call policy: what an agent's link may dial, how often, and the record of it all.

A leaked link must not be a toll-fraud tool: premium-rate and satellite numbers are refused
before any request reaches a platform, so are other countries unless allowed, and an agent
places at most DIAL_MAX_PER_MINUTE / DIAL_MAX_PER_HOUR calls. Every attempt is listed by
``callhook dials list``. The platforms are the fakes of tests/platforms/*/fake_api.py; their
request logs show what reached them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import Environment, RedisServer
from tests.test_click_to_call_endpoint import c2c_app, call, forget_dial_counts

KAV = "kav@example.com"


@pytest.fixture(scope="module")
def platforms(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    with c2c_app(redis_server, tmp_path_factory.mktemp("dial-policy")) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _full_allowance(redis_server: RedisServer) -> None:
    forget_dial_counts(redis_server)


@pytest.fixture
def env(platforms: dict[str, Any]) -> Iterator[Environment]:
    """Settings a test changes, restored after it."""
    changed = Environment()
    yield changed
    changed.restore()


def sent(platforms: dict[str, Any]) -> int:
    """Requests every fake platform API has received so far."""
    return sum(len(platforms[name].requests()) for name in ("kavkom", "kwebbl", "kazoo", "uis"))


def dials(*args: str) -> str:
    from webhook_receiver.cli.main import cli

    result = CliRunner().invoke(cli, ["dials", "list", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(platforms: dict[str, Any], to: str, email: str = KAV) -> dict[str, Any]:
    """Dial `to`; assert callhook refused it with 400 and no platform heard of it."""
    before = sent(platforms)
    response = call(platforms, email, to)
    assert response.status_code == 400, response.json
    assert sent(platforms) == before, "a refused number reached a platform"
    return response.json


@pytest.mark.parametrize(
    ("number", "countries"),
    [
        ("+1 900 555 0199", "*"),  # US premium rate, with every country allowed
        ("+33 8 99 12 34 56", ""),  # French premium rate, in DEFAULT_REGION's country
        ("08 99 12 34 56", ""),  # the same, written nationally
    ],
)
def test_premium_rate_numbers_are_refused_before_any_platform_request(  # type: ignore[no-untyped-def]
    platforms, env, number: str, countries: str
) -> None:
    env.set({"DIAL_ALLOWED_COUNTRIES": countries})
    body = refused(platforms, number)
    assert body["error"] == "number_not_allowed"
    assert "premium-rate" in body["reason"]


@pytest.mark.parametrize("number", ["+881 6 1234 5678", "+870 773 111 632", "+882 13 000 000"])
def test_satellite_and_international_network_numbers_are_never_dialled(  # type: ignore[no-untyped-def]
    platforms, env, number: str
) -> None:
    env.set({"DIAL_ALLOWED_COUNTRIES": "*"})  # not even with every country allowed
    body = refused(platforms, number)
    assert body["error"] == "number_not_allowed"
    assert "satellite or international network" in body["reason"]


def test_another_country_is_refused_until_the_operator_allows_it(platforms, env) -> None:  # type: ignore[no-untyped-def]
    body = refused(platforms, "+44 20 7946 0958")  # the module allows FR and RU
    assert "in GB" in body["reason"] and "FR, RU only" in body["reason"]

    env.set({"DIAL_ALLOWED_COUNTRIES": "fr, ru, gb"})
    placed = call(platforms, KAV, "+44 20 7946 0958")
    assert placed.status_code == 202, placed.json
    assert platforms["kavkom"].placed()[-1]["json"]["destination"] == "442079460958"


def test_an_empty_country_list_means_default_regions_country(platforms, env) -> None:  # type: ignore[no-untyped-def]
    env.set({"DIAL_ALLOWED_COUNTRIES": ""})
    body = refused(platforms, "+79260000124", email="uis@example.com")
    assert "in RU" in body["reason"] and "FR only" in body["reason"]
    assert call(platforms, "uis@example.com", "09 70 00 00 00").status_code == 202


def test_toll_free_and_voip_are_dialled_by_default_and_types_are_configurable(  # type: ignore[no-untyped-def]
    platforms, env
) -> None:
    # A French toll-free number and a French VoIP (09) number: the default types allow both.
    assert call(platforms, "kweb@example.com", "0 800 12 34 56").status_code == 202
    assert call(platforms, "kweb@example.com", "09 70 00 00 01").status_code == 202
    env.set({"DIAL_ALLOWED_TYPES": "fixed_line,mobile,fixed_line_or_mobile"})
    body = refused(platforms, "0 800 12 34 57", email="kweb@example.com")
    assert "toll-free" in body["reason"]
    assert call(platforms, "kweb@example.com", "06 12 34 56 90").status_code == 202


def test_the_seventh_call_within_a_minute_is_429_and_never_reaches_the_platform(  # type: ignore[no-untyped-def]
    platforms,
) -> None:
    before = len(platforms["kwebbl"].calls)
    for i in range(6):
        response = call(platforms, "kweb@example.com", f"+3361234570{i}")
        assert response.status_code == 202, (i, response.json)
    assert len(platforms["kwebbl"].calls) == before + 6
    requests_before = sent(platforms)

    limited = call(platforms, "kweb@example.com", "+33612345706")

    assert limited.status_code == 429
    assert limited.json["error"] == "rate_limited"
    assert "6 calls per minute" in limited.json["reason"]
    wait = int(limited.headers["Retry-After"])
    assert 1 <= wait <= 60 and limited.json["retry_after"] == wait
    assert sent(platforms) == requests_before, "a rate-limited call reached the platform"
    # Another agent has their own allowance.
    assert call(platforms, "kaz@example.com", "+33612345707").status_code == 202


def test_the_hourly_limit_holds_too(platforms, env) -> None:  # type: ignore[no-untyped-def]
    env.set({"DIAL_MAX_PER_HOUR": "2"})
    assert call(platforms, "kaz@example.com", "+33612345708").status_code == 202
    assert call(platforms, "kaz@example.com", "+33612345709").status_code == 202
    before = sent(platforms)
    limited = call(platforms, "kaz@example.com", "+33612345710")
    assert limited.status_code == 429 and "2 calls per hour" in limited.json["reason"]
    assert 3000 < int(limited.headers["Retry-After"]) <= 3600
    assert sent(platforms) == before


def test_without_redis_no_call_is_placed(platforms, env, redis_server) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    # Fail closed: without the shared count, a leaked link would have no limit at all.
    env.set({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    before = sent(platforms)
    response = call(platforms, "kweb@example.com", "+33612345711")
    assert response.status_code == 503 and response.json["error"] == "limit_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert sent(platforms) == before


def test_the_crm_link_page_applies_the_same_policy(platforms) -> None:  # type: ignore[no-untyped-def]
    client = platforms["client"]
    before = sent(platforms)
    premium = client.get("/call?to=%2B33899123456")
    assert premium.status_code == 400 and premium.json["error"] == "number_not_allowed"
    assert "premium-rate" in premium.json["reason"]
    satellite = client.get("/call?to=%2B881612345678")
    assert satellite.status_code == 400 and "satellite" in satellite.json["reason"]
    foreign = client.get("/call?to=%2B442079460958")
    assert foreign.status_code == 400 and "in GB" in foreign.json["reason"]
    assert client.get("/call?to=" + "6" * 5000).status_code == 400
    assert client.get("/call?to=%2B33612345712").status_code == 200
    assert sent(platforms) == before


def test_every_attempt_is_listed_by_callhook_dials_list(platforms) -> None:  # type: ignore[no-untyped-def]
    agent = "uis@example.com"
    earlier = dials("--agent", agent, "--limit", "1").splitlines()[1:]  # this module's tests
    last_id = int(earlier[0].split()[0]) if earlier else 0
    for _ in range(6):
        assert call(platforms, agent, "+79260000125").status_code == 202
    assert call(platforms, agent, "+79260000126").status_code == 429
    assert call(platforms, agent, "+33 8 99 12 34 56").status_code == 400
    assert call(platforms, agent, "x" * 5000).status_code == 400

    out = dials("--agent", agent, "--limit", "100").splitlines()
    header = out[0].split()
    assert header[:3] == ["ID", "AT", "(UTC)"] and "RESULT" in header and "REASON" in header
    rows = [line for line in out[1:] if int(line.split()[0]) > last_id]
    results = [line.split()[4] for line in rows]  # ID, date, time, agent, result
    assert results.count("placed") == 6
    assert results.count("rate_limited") == 1
    assert results.count("refused") == 2
    assert all(agent in line for line in rows)
    newest = rows[0]
    assert "refused" in newest and "x" * 19 + "…" in newest  # requested, cut for the column
    assert "+79260000125" in dials("--agent", agent, "--result", "placed", "--limit", "1")
    only_limited = dials("--agent", agent, "--result", "rate_limited").splitlines()[1:]
    assert len(only_limited) == 1 and "Too many calls" in only_limited[0]
    refusals = dials("--agent", agent, "--result", "refused").splitlines()[1:]
    assert any(line.split()[5:7] == ["+33", "8"] and "+33899123456" in line.split()
               and "premium-rate" in line for line in refusals)  # fmt: skip


def test_the_record_holds_what_was_asked_and_what_happened(platforms) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import select

    from worker.core.db import session_scope
    from worker.core.models import DialAttempt

    platforms["kavkom"].fail_next(503)
    assert call(platforms, KAV, "+33612345713").status_code == 502
    assert call(platforms, KAV, "y" * 5000).status_code == 400
    with session_scope() as session:
        failed, long = session.exec(
            select(DialAttempt)
            .where(DialAttempt.agent_email == KAV)
            .order_by(DialAttempt.id.desc())  # type: ignore[union-attr]
            .limit(2)
        ).all()[::-1]
    assert (failed.result, failed.destination, failed.platform) == (
        "failed",
        "+33612345713",
        "kavkom",
    )
    assert failed.reason and "kavkom" in failed.reason.lower()
    assert (long.result, long.requested, long.destination) == ("refused", "y" * 64, None)
    assert long.reason and "5000 characters" in long.reason


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DIAL_ALLOWED_TYPES", "fixed_line,premium_rate", "premium_rate can never be dialled"),
        ("DIAL_ALLOWED_TYPES", "mobile,shared_cost,uan", "shared_cost, uan can never"),
        ("DIAL_ALLOWED_TYPES", "mobile,landline", "unknown number type(s) landline"),
        ("DIAL_ALLOWED_TYPES", " , ", "at least one number type"),
        ("DIAL_ALLOWED_COUNTRIES", "FR,XX", "XX: not ISO 3166"),
        ("DIAL_ALLOWED_COUNTRIES", "001", "001: not ISO 3166"),
        ("DIAL_ALLOWED_COUNTRIES", "*,FR", "`*` (any country) stands alone"),
    ],
)
def test_a_bad_policy_setting_stops_start_up_with_a_clear_message(
    platforms: dict[str, Any], env: Environment, name: str, value: str, says: str
) -> None:
    from worker.core.settings import ConfigError, load_settings

    env.set({name: value})
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert f"{name}:" in str(error.value) and says in str(error.value)


def test_policy_settings_are_normalised(platforms: dict[str, Any], env: Environment) -> None:
    from worker.core.settings import load_settings

    env.set(
        {"DIAL_ALLOWED_TYPES": " Mobile, FIXED_LINE ,mobile", "DIAL_ALLOWED_COUNTRIES": "fr, be"}
    )
    settings = load_settings()
    assert settings.dial_allowed_types == "mobile,fixed_line"
    assert settings.dial_allowed_countries == "FR,BE"
