"""The HubSpot adapter through the real hubspot-api-client, against the fake HubSpot over HTTP.

What a misconfigured or throttled portal does to a sync: each failure is sorted into
"retry later" or "record and stop", with HubSpot's own reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOKEN
from tests.fake_hubspot import FakeHubSpot
from webhook_receiver.mapping import load_mappings
from worker.crm.base import CallSnapshot, PermanentCrmError, TransientCrmError
from worker.crm.hubspot import ClientTransport, HubSpotCrm
from worker.crm.hubspot_config import HubSpotMapping


@pytest.fixture
def fake(hubspot: FakeHubSpot) -> Iterator[FakeHubSpot]:
    hubspot.reset()
    yield hubspot
    hubspot.reset()


def adapter(fake: FakeHubSpot, token: str = TOKEN, mapping: HubSpotMapping | None = None):  # type: ignore[no-untyped-def]
    files = load_mappings(ROOT / "mappings")
    assert files.hubspot is not None
    return HubSpotCrm(
        ClientTransport(token, fake.url, timeout_s=5), mapping or files.hubspot, files.agents, "FR"
    )


def snapshot(call_id: str, number: str, **changes: object) -> CallSnapshot:
    values: dict[str, object] = dict(
        id=1, platform="kavkom", platform_call_id=call_id, stage="cdr", ended=True,
        direction="inbound", crm_contact_id=None, crm_task_id=None,
        external_number=number, external_number_raw=number.lstrip("+"), company_number=None,
        agent=None, started_at=datetime(2026, 3, 18, 12, 0, tzinfo=UTC), answered_at=None,
        ended_at=None, duration_s=42, talk_s=None, outcome="answered", recording_url=None,
        hangup_cause=None, variables={}, crm_id=None,
    )  # fmt: skip
    values.update(changes)
    return CallSnapshot(**values)  # type: ignore[arg-type]


def test_wrong_token_is_permanent_with_hubspots_reason(fake: FakeHubSpot) -> None:
    with pytest.raises(PermanentCrmError) as info:
        adapter(fake, token="pat-wrong").log_call(snapshot("t-401", "+33612345620"))
    assert info.value.status == 401
    assert "INVALID_AUTHENTICATION" in str(info.value)


def test_unknown_custom_property_is_permanent_and_names_the_property(
    fake: FakeHubSpot, tmp_path: Path
) -> None:
    files = load_mappings(ROOT / "mappings")
    assert files.hubspot is not None
    data = files.hubspot.model_dump(mode="json")
    data["call"]["properties"] = {"x_campaign": "{{ variables.campaign }}"}
    crm = adapter(fake, mapping=HubSpotMapping.model_validate(data))
    call = snapshot("t-prop", "+33612345621", variables={"campaign": "spring"})
    with pytest.raises(PermanentCrmError) as info:
        crm.log_call(call)
    assert info.value.status == 400
    assert "x_campaign" in str(info.value) and "does not exist" in str(info.value)
    assert fake.calls() == []
    # Once the portal has the property, the same call goes through with the template's value.
    fake.add_property("calls", "x_campaign")
    crm.log_call(call)
    (logged,) = fake.calls()
    assert logged["properties"]["x_campaign"] == "spring"


def test_rate_limit_is_transient_and_carries_retry_after(fake: FakeHubSpot) -> None:
    fake.fail_next(1, 429, retry_after=3)
    with pytest.raises(TransientCrmError) as info:
        adapter(fake).log_call(snapshot("t-429", "+33612345622"))
    assert (info.value.status, info.value.retry_after) == (429, 3.0)


def test_daily_limit_is_permanent(fake: FakeHubSpot) -> None:
    fake.fail_next(1, 429, policy="DAILY")
    with pytest.raises(PermanentCrmError) as info:
        adapter(fake).log_call(snapshot("t-daily", "+33612345623"))
    assert "daily" in str(info.value).lower()


def test_outage_is_transient(fake: FakeHubSpot) -> None:
    fake.set_down(502)
    with pytest.raises(TransientCrmError) as info:
        adapter(fake).log_call(snapshot("t-502", "+33612345624"))
    assert info.value.status == 502


def test_same_national_number_in_another_country_is_not_the_caller(fake: FakeHubSpot) -> None:
    # HubSpot's calculated property drops the country code: 06 12 34 56 25 in France and
    # +44 612345625 share "612345625". The adapter checks the country itself.
    fake.add_contact(firstname="Wrong", lastname="Country", phone="+44 612345625")
    right = fake.add_contact(firstname="Right", lastname="Country", phone="06 12 34 56 25")
    result = adapter(fake).log_call(snapshot("t-country", "+33612345625"))
    assert result.contact_id == right
    (logged,) = fake.calls()
    assert logged["associations"]["contacts"] == [right]
    assert logged["properties"]["hs_call_title"] == "Inbound call from Right Country"


def test_owner_comes_from_the_agent_email(fake: FakeHubSpot) -> None:
    owner = fake.add_owner("alice@example.com", "Alice", "Martin")
    result = adapter(fake).log_call(snapshot("t-owner", "+33612345626", agent="1001"))
    assert result.owner_id == owner
    (logged,) = fake.calls()
    assert logged["properties"]["hubspot_owner_id"] == owner


def test_duration_comes_from_the_times_when_the_platform_states_none(fake: FakeHubSpot) -> None:
    # Kwebbl sends only event times: answered 12:00:05, terminated 12:01:47 → 102 s of talk.
    call = snapshot(
        "t-times", "+33612345627", duration_s=None,
        answered_at=datetime(2026, 3, 18, 12, 0, 5, tzinfo=UTC),
        ended_at=datetime(2026, 3, 18, 12, 1, 47, tzinfo=UTC),
    )  # fmt: skip
    adapter(fake).log_call(call)
    (logged,) = fake.calls()
    assert logged["properties"]["hs_call_duration"] == "102000"


def test_a_cached_contact_deleted_in_hubspot_is_looked_up_again(
    fake: FakeHubSpot, redis_server: Any
) -> None:
    import redis as redis_lib

    from worker.crm.contact_cache import RedisContactCache

    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    cache = RedisContactCache(client, hit_s=300, miss_s=30)
    crm = adapter(fake)
    crm.cache = cache
    gone = fake.add_contact(firstname="Old", lastname="Record", phone="06 12 34 56 28")
    assert crm.find_contact_by_number("+33612345628").id == gone  # now remembered
    del fake.objects["contacts"][gone]  # merged away in HubSpot
    new = fake.add_contact(firstname="New", lastname="Record", phone="06 12 34 56 28")
    crm.log_call(snapshot("t-stale", "+33612345628"))
    (logged,) = fake.calls()
    assert logged["associations"]["contacts"] == [new]
