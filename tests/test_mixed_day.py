"""A realistic mixed day, end to end on the CRM side, at CI size (bench/mixed_day.py).

About 80 calls across the five platforms: inbound and outbound answered, missed inbound,
busy outbound, transfers, ring groups; known contacts stored in mixed phone formats, two
contacts sharing one number, unknown callers, the company's own numbers; some calls
recorded. Every delivery of the day goes through the real receiver, shuffled, about 15 %
twice; late deliveries follow once the day is logged, then one incident (HubSpot answers
429 to a task creation). A real worker logs it all into the fake HubSpot, whose 429s past
100 requests per 10 s and 5 searches per second are HubSpot's.

Each planned call is checked twice: its HubSpot call (exactly one per external id, its
properties, contact, company, owner, recording, callhook's row synced) and its missed-call
task (exactly for missed inbound calls, with subject, owner and contact). A failure names
the call and the property. A check a known bug of callhook fails would be a strict xfail
naming the bug (tests.mixed_day.known_bugs); there is none today. The shared HubSpot
budget runs with HubSpot's own figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import mixed_day
from tests.conftest import PLATFORMS, RedisServer, fresh_database
from tests.fake_hubspot import FakeHubSpot

CALLS, SEED = 80, 7
DAY = mixed_day.plan_day(CALLS, SEED)

# The whole day runs in the first test's setup: about 30 s alone, longer on a busy machine.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def day(
    db_kind: str,
    redis_server: RedisServer,
    hubspot: FakeHubSpot,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[mixed_day.DayResult]:
    tmp = tmp_path_factory.mktemp(f"mixed-day-{db_kind}")
    result = mixed_day.run_day(
        DAY,
        db_url=fresh_database(db_kind, tmp),
        redis_url=redis_server.url,
        hubspot=hubspot,
        tmp=tmp,
        timeout_s=240,
    )
    problems, known = mixed_day.check_day(result), []
    for call in DAY.calls:
        bugs = mixed_day.known_bugs(call)
        known += mixed_day.check_record(result, call) if "record" in bugs else []
        known += mixed_day.check_task(result, call) if "task" in bugs else []
    print(mixed_day.report(result, problems, known))  # shown with -rA or on failure
    yield result
    hubspot.reset()


def per_call(check: str) -> list[Any]:
    """One parameter per planned call, a strict xfail where a known bug fails `check`."""
    params = []
    for call in DAY.calls:
        bug = mixed_day.known_bugs(call).get(check)
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        params.append(pytest.param(call.key, id=call.key, marks=marks))
    return params


def explain(problems: list[mixed_day.Problem]) -> str:
    return "\n".join(str(p) for p in problems)


def test_the_day_holds_what_a_sales_team_meets() -> None:
    calls = DAY.calls
    assert {c.platform for c in calls} == set(mixed_day.SCENARIOS) <= set(PLATFORMS)
    for platform, scenarios in mixed_day.SCENARIOS.items():
        seen = {c.scenario for c in calls if c.platform == platform}
        assert seen == set(scenarios), platform
    assert {c.party.kind for c in calls} == {"contact", "twins", "unknown", "company"}
    assert any(c.expected.recording_url for c in calls)
    assert {c.expected.owner for c in calls} >= {mixed_day.ALICE, mixed_day.BOB, None}
    stored = {c.stored for c in DAY.contacts.values()}
    assert {"06 55 50 00 00", "+33 6 55 50 00 01", "0033 6 55 50 00 02"} <= stored
    assert "(+33) 6-55-50-00-03" in stored
    assert sum(c.number == mixed_day.TWIN_NUMBER for c in DAY.contacts.values()) == 2
    late = {c.late for c in calls if c.late}
    assert late == set(mixed_day.LATE.values())
    assert sum(c.incident for c in calls) == 1
    repeats = len(DAY.deliveries) - sum(len(c.deliveries) for c in calls)
    assert 0.12 < repeats / len(DAY.deliveries) < 0.16


@pytest.mark.parametrize("key", per_call("record"))
def test_call_is_logged_once_as_expected(day: mixed_day.DayResult, key: str) -> None:
    problems = mixed_day.check_record(day, DAY.call(key))
    assert not problems, explain(problems)


@pytest.mark.parametrize("key", per_call("task"))
def test_missed_call_task_exactly_when_due(day: mixed_day.DayResult, key: str) -> None:
    problems = mixed_day.check_task(day, DAY.call(key))
    assert not problems, explain(problems)


def day_problems(result: mixed_day.DayResult, check: str) -> list[mixed_day.Problem]:
    return [p for p in mixed_day.check_day(result) if p.check.startswith(check)]


def test_every_wave_settled_within_the_wait(day: mixed_day.DayResult) -> None:
    problems = day_problems(day, "wave")
    assert not problems, explain(problems)


def test_no_call_left_failed_in_callhook(day: mixed_day.DayResult) -> None:
    # 429s (the incident's, any other) are retried: none may end a call as failed.
    problems = day_problems(day, "calls left failed")
    assert not problems, explain(problems)
    assert {r["crm_status"] for r in day.rows if r["merged_into"] is None and r["ended"]} == {
        "synced"
    }


def test_hubspot_holds_nothing_the_day_does_not_explain(day: mixed_day.DayResult) -> None:
    problems = day_problems(day, "HubSpot calls no planned call") + day_problems(day, "tasks no")
    assert not problems, explain(problems)


def test_the_companys_own_numbers_are_never_looked_up(day: mixed_day.DayResult) -> None:
    problems = day_problems(day, "contact searches for the company")
    assert not problems, explain(problems)
