"""The agent page's lists: today's calls and the missed calls to call back (GET /agent/calls).

Read from callhook's own tables: the rules (whose calls, which day in which time zone,
when a missed call is cleared) are checked on call rows written as the worker writes
them, and once end to end through webhooks and the real worker. A page load never asks
HubSpot anything.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_until
from tests.test_call_logging_e2e import post
from tests.test_screen_pop import live
from tests.test_wrap_up import shown_to
from worker.core.agent_links import create_link
from worker.core.db import session_scope
from worker.core.models import Call, CallPop, CrmStatus

DAY = datetime(2026, 3, 18, tzinfo=UTC)


def add_call(
    call_id: str,
    at: datetime,
    number: str,
    *,
    direction: str = "inbound",
    agent: str | None = "1001",
    answered: bool = False,
    ended: bool = True,
    shown_to: tuple[str, ...] = (),
    contact: str | None = None,
) -> int:
    """A call row as the fold leaves it (and the pops it made), for the lists to read."""
    with session_scope() as session:
        call = Call(
            platform="kavkom", platform_call_id=call_id, stage="ended" if ended else "ringing",
            direction=direction, external_number=number, external_number_raw=number.lstrip("+"),
            agent=agent, started_at=at, answered_at=at + timedelta(seconds=8) if answered else None,
            ended_at=at + timedelta(seconds=70) if ended else None, ended=ended,
            outcome=("answered" if answered else "no_answer") if ended else None,
            talk_s=62 if answered else None, crm_status=CrmStatus.SYNCED,
            crm_contact_name=contact,
        )  # fmt: skip
        session.add(call)
        session.flush()
        assert call.id is not None
        for email in shown_to:
            session.add(CallPop(call_id=call.id, agent_email=email, shown_at=at))
        return call.id


def day_of(client, email: str, day: str, tz: str = "UTC") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    answer = client.get(f"/agent/calls?day={day}&tz={tz}",
                        headers={"X-Callhook-Agent": create_link(email)})  # fmt: skip
    assert answer.status_code == 200, answer.json
    return answer.json  # type: ignore[no-any-return]


def test_a_day_is_the_agents_day_in_their_time_zone(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    # 23:30 UTC on March 17 is 00:30 on March 18 in Paris.
    late = add_call("day-late", DAY - timedelta(minutes=30), "+33612345801", answered=True)
    noon = add_call("day-noon", DAY + timedelta(hours=12), "+33612345802", answered=True,
                    contact="Ada Lovelace")  # fmt: skip
    requests_before = len(hubspot.requests())
    paris = day_of(client, "alice@example.com", "2026-03-18", "Europe/Paris")
    assert [c["call_id"] for c in paris["calls"]] == [noon, late]  # newest first
    assert paris["tz"] == "Europe/Paris" and paris["day"] == "2026-03-18"
    utc = day_of(client, "alice@example.com", "2026-03-18", "UTC")
    assert [c["call_id"] for c in utc["calls"]] == [noon]
    assert [c["call_id"] for c in day_of(client, "alice@example.com", "2026-03-17")["calls"]] == [
        late
    ]
    first = paris["calls"][0]
    assert first == {
        "call_id": noon, "at": "2026-03-18T12:00:00+00:00", "direction": "inbound",
        "number": "+33612345802", "number_display": "+33 6 12 34 58 02",
        "contact_name": "Ada Lovelace", "outcome": "answered", "answered": True, "ended": True,
        "duration_s": 62, "wrap_up": None, "can_wrap_up": True,
    }  # fmt: skip
    assert len(hubspot.requests()) == requests_before  # no HubSpot request per page load


def test_an_agents_calls_are_theirs_and_their_ring_groups(client) -> None:  # type: ignore[no-untyped-def]
    at = DAY + timedelta(days=1, hours=9)  # March 19
    mine = add_call("who-mine", at, "+33612345811", agent="901", answered=True)  # Kavkom 901: Alice
    bobs = add_call("who-bob", at + timedelta(minutes=1), "+33612345812", agent="1002")
    group_missed = add_call("who-group", at + timedelta(minutes=2), "+33612345813", agent="1002",
                            shown_to=("alice@example.com", "bob@example.com"))  # fmt: skip
    taken = add_call("who-taken", at + timedelta(minutes=3), "+33612345814", agent="1002",
                     answered=True, shown_to=("alice@example.com", "bob@example.com"))  # fmt: skip
    alice = day_of(client, "alice@example.com", "2026-03-19")
    assert {c["call_id"] for c in alice["calls"]} == {mine, group_missed}
    assert [m["call_id"] for m in alice["missed"]] == [group_missed]
    bob = day_of(client, "bob@example.com", "2026-03-19")
    assert {c["call_id"] for c in bob["calls"]} == {bobs, group_missed, taken}


def test_missed_calls_stay_until_someone_spoke_with_the_caller(client) -> None:  # type: ignore[no-untyped-def]
    at = DAY + timedelta(days=2, hours=8)  # March 20
    # Called back by a colleague, who got through: cleared.
    add_call("miss-a", at, "+33612345821")
    add_call("back-a", at + timedelta(minutes=30), "+33612345821", direction="outbound",
             agent="1002", answered=True)  # fmt: skip
    # Called back, nobody answered: still to call back, with when it was tried.
    tried = add_call("miss-b", at + timedelta(hours=1), "+33612345822", contact="Grace Hopper")
    add_call("back-b", at + timedelta(hours=1, minutes=15), "+33612345822",
             direction="outbound", agent="1002")  # fmt: skip
    # The customer called again and a colleague picked up: cleared.
    add_call("miss-c", at + timedelta(hours=2), "+33612345823")
    add_call("again-c", at + timedelta(hours=2, minutes=20), "+33612345823", agent="1002",
             answered=True)  # fmt: skip
    # Missed twice: one entry, counted twice.
    add_call("miss-d1", at + timedelta(hours=3), "+33612345824")
    twice = add_call("miss-d2", at + timedelta(hours=3, minutes=10), "+33612345824")
    # Spoken with in the morning, missed in the afternoon: the miss is still to call back.
    add_call("talk-e", at, "+33612345825", answered=True)
    later = add_call("miss-e", at + timedelta(hours=5), "+33612345825")
    # Still ringing (not ended): not missed yet.
    add_call("ring-f", at + timedelta(hours=6), "+33612345826", ended=False)

    missed = day_of(client, "alice@example.com", "2026-03-20")["missed"]
    assert [(m["call_id"], m["count"]) for m in missed] == [(later, 1), (twice, 2), (tried, 1)]
    b = missed[-1]
    assert b["contact_name"] == "Grace Hopper" and b["number_display"] == "+33 6 12 34 58 22"
    assert b["tried_at"] == "2026-03-20T09:15:00+00:00"
    assert missed[0]["tried_at"] is None


def test_end_to_end_a_ring_groups_missed_call_is_on_both_pages(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    hubspot.add_contact(firstname="Ada", lastname="Byron", phone="06 12 34 58 31")
    now = int(time.time())
    for extension in ("1001", "1002"):
        post(client, {**live("list-e2e", "ringing", extension, "33612345831"), "createdEpoch": now})
    # The cards are shown while it rings (a ringing event folded after the end pops nothing).
    wait_until(lambda: shown_to("list-e2e") == {"alice@example.com", "bob@example.com"})
    post(client, {**live("list-e2e", "finished", "1001", "33612345831"), "createdEpoch": now})
    today = datetime.now(UTC).date().isoformat()

    def missed_for(email: str) -> list[dict[str, Any]]:
        found = day_of(client, email, today)["missed"]
        return [m for m in found if m["number"] == "+33612345831"]

    for email in ("alice@example.com", "bob@example.com"):
        (entry,) = wait_until(lambda email=email: missed_for(email), timeout=30)
        assert entry["contact_name"] == "Ada Byron"  # the name its card showed


def test_bad_queries_get_a_4xx_with_the_reason(client) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-Callhook-Agent": create_link("alice@example.com")}

    def refused(query: str, status: int = 400, **kwargs: Any) -> dict[str, Any]:
        answer = client.get(f"/agent/calls{query}", **{"headers": headers, **kwargs})
        assert answer.status_code == status, answer.json
        return answer.json  # type: ignore[no-any-return]

    assert refused("?day=2026-13-01")["error"] == "bad_day"
    assert refused("?day=yesterday")["error"] == "bad_day"
    assert refused("?day=1900-01-01")["error"] == "bad_day"
    assert refused("?day=9999-12-31")["error"] == "bad_day"
    assert refused("?tz=Mars/Olympus_Mons")["error"] == "bad_tz"
    assert refused("?tz=../../etc/passwd")["error"] == "bad_tz"
    assert refused("?tz=" + "A" * 65)["error"] == "bad_tz"
    assert refused("?tz=America")["error"] == "bad_tz"  # a folder of zones, not one
    assert "personal callhook link" in refused("", 403, headers={})["reason"]
    assert client.get("/agent/calls", headers=headers).status_code == 200  # today, UTC


def test_a_busy_day_is_bounded(client) -> None:  # type: ignore[no-untyped-def]
    at = DAY + timedelta(days=5)  # March 23
    for i in range(205):
        add_call(f"busy-{i}", at + timedelta(minutes=i), f"+336123459{i % 100:02d}", answered=True)
    busy = day_of(client, "alice@example.com", "2026-03-23")
    assert busy["truncated"] is True and len(busy["calls"]) == 200
    assert busy["calls"][0]["at"] == (at + timedelta(minutes=204)).isoformat()


# The client is the module's app; each example is one request, independent of the others.
QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=QUIET)  # fmt: skip
@given(
    day=st.text(max_size=14) | st.dates().map(str),
    tz=st.text(max_size=40)
    | st.sampled_from(
        ["Europe/Paris", "UTC", "Etc/GMT+12", "America/Argentina/Buenos_Aires", "posixrules", ".."]
    ),
)
def test_any_day_and_zone_get_an_answer_never_a_5xx(client, day: str, tz: str) -> None:  # type: ignore[no-untyped-def]
    answer = client.get("/agent/calls", query_string={"day": day, "tz": tz},
                        headers={"X-Callhook-Agent": token()})  # fmt: skip
    assert answer.status_code in (200, 400), answer.data
    if answer.status_code == 400:
        assert answer.json["error"] in ("bad_day", "bad_tz") and answer.json["reason"]


_tokens: dict[str, str] = {}


def token() -> str:
    """One agent link per database for the whole fuzz (a link is a row of that database)."""
    from worker.core.settings import get_settings

    database = get_settings().sqlalchemy_url
    if database not in _tokens:
        _tokens[database] = create_link("alice@example.com")
    return _tokens[database]
