"""The choices a sales team makes in mappings/hubspot.yaml, each shown against the fake HubSpot.

Matching (several contacts on one number, the company's own numbers, unknown callers),
what a call is associated with (company, open deal), owners, the missed-call task and
logging from the start of a call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import redis as redis_lib

from tests.conftest import ROOT, RedisServer
from tests.fake_hubspot import FakeHubSpot
from tests.test_hubspot_adapter import adapter, snapshot
from webhook_receiver.mapping import load_mappings
from worker.crm.contact_cache import RedisContactCache
from worker.crm.hubspot import HubSpotCrm
from worker.crm.hubspot_config import HubSpotMapping


@pytest.fixture
def fake(hubspot: FakeHubSpot) -> Iterator[FakeHubSpot]:
    hubspot.reset()
    yield hubspot
    hubspot.reset()


def configured(
    fake: FakeHubSpot, redis_server: RedisServer | None = None, **changes: Any
) -> HubSpotCrm:
    """The adapter with hubspot.yaml changed as a user would edit it."""
    files = load_mappings(ROOT / "mappings")
    assert files.hubspot is not None
    data = files.hubspot.model_dump(mode="json")
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    crm = adapter(fake, mapping=HubSpotMapping.model_validate(data))
    if redis_server is not None:
        client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
        client.flushall()
        crm.cache = RedisContactCache(client, hit_s=300, miss_s=30)
        crm.locks = client
    return crm


def searches(fake: FakeHubSpot) -> int:
    return sum(1 for r in fake.requests() if r["path"] == "/crm/v3/objects/contacts/search")


def test_several_contacts_on_a_number_most_recent_wins_and_the_choice_is_noted(fake) -> None:  # type: ignore[no-untyped-def]
    fake.add_contact(firstname="Old", lastname="Twin", phone="06 12 34 56 30",
                     lastmodifieddate="2026-01-01T00:00:00.000Z")  # fmt: skip
    recent = fake.add_contact(firstname="New", lastname="Twin", phone="+33612345630",
                              lastmodifieddate="2026-11-01T00:00:00.000Z")  # fmt: skip
    result = configured(fake).log_call(snapshot("p-two", "+33612345630"))
    assert result.contact_id == recent
    assert (
        result.contact_note
        == "2 contacts share +33612345630: chose the most recently modified (New Twin)"
    )
    assert fake.calls()[0]["associations"]["contacts"] == [recent]


def test_several_contacts_logged_on_all_when_asked(fake) -> None:  # type: ignore[no-untyped-def]
    a = fake.add_contact(firstname="A", phone="06 12 34 56 31")
    b = fake.add_contact(firstname="B", phone="06 12 34 56 31")
    crm = configured(fake, contact_lookup__several_matches="all")
    result = crm.log_call(snapshot("p-all", "+33612345631"))
    assert sorted(fake.calls()[0]["associations"]["contacts"]) == sorted([a, b])
    assert "logged on all of them" in (result.contact_note or "")


def test_the_companys_own_number_is_never_a_customer(fake) -> None:  # type: ignore[no-untyped-def]
    fake.add_contact(firstname="Switchboard", phone="01 23 45 67 89")
    crm = configured(fake, contact_lookup__company_numbers=["+33123456789"])
    result = crm.log_call(snapshot("p-did", "+33123456789"))
    assert result.contact_id is None and searches(fake) == 0
    assert fake.calls()[0]["associations"] == {}


def test_an_unknown_caller_gets_one_placeholder_contact(fake, redis_server) -> None:  # type: ignore[no-untyped-def]
    crm = configured(fake, redis_server, contact_lookup__unknown_caller="create_contact")
    first = crm.log_call(snapshot("p-new-1", "+33612345632"))
    second = crm.log_call(snapshot("p-new-2", "+33612345632"))
    placeholders = [c for c in fake.objects["contacts"].values()
                    if c["properties"].get("phone") == "+33612345632"]  # fmt: skip
    assert len(placeholders) == 1
    assert placeholders[0]["properties"]["lastname"] == "+33 6 12 34 56 32"
    assert first.contact_id == second.contact_id == placeholders[0]["id"]
    assert first.contact_note == "created a placeholder contact for an unknown caller"
    assert [c["associations"]["contacts"] for c in fake.calls()] == [[first.contact_id]] * 2


def test_the_contacts_company_and_open_deal_are_associated(fake) -> None:  # type: ignore[no-untyped-def]
    company = fake.add_company("Analytical Ltd")
    contact = fake.add_contact(firstname="Ada", phone="06 12 34 56 33", associatedcompanyid=company)
    fake.add_deal("Old deal", contact, closed=True)
    open_deal = fake.add_deal("Renewal 2027", contact)
    crm = configured(fake, associations__open_deal=True)
    crm.log_call(snapshot("p-assoc", "+33612345633"))
    links = fake.calls()[0]["associations"]
    assert (links["contacts"], links["companies"], links["deals"]) == (
        [contact], [company], [open_deal],
    )  # fmt: skip


def test_owner_falls_back_to_the_contacts_then_the_default(fake) -> None:  # type: ignore[no-untyped-def]
    carol = fake.add_owner("carol@example.com")
    default = fake.add_owner("sales-lead@example.com")
    fake.add_contact(firstname="Owned", phone="06 12 34 56 34", hubspot_owner_id=carol)
    crm = configured(fake, owners__default_owner_id=default)
    assert crm.log_call(snapshot("p-own-1", "+33612345634")).owner_id == carol
    assert crm.log_call(snapshot("p-own-2", "+33612345635")).owner_id == default


def test_a_missed_inbound_call_gets_one_follow_up_task(fake) -> None:  # type: ignore[no-untyped-def]
    alice = fake.add_owner("alice@example.com", "Alice", "Martin")
    contact = fake.add_contact(firstname="Grace", lastname="Hopper", phone="06 12 34 56 36")
    crm = configured(fake, missed_call_task__enabled=True)
    ended = datetime(2026, 3, 18, 12, 0, 40, tzinfo=UTC)
    missed = snapshot("p-missed", "+33612345636", outcome="no_answer", agent="1001",
                      ended_at=ended, duration_s=40)  # fmt: skip
    result = crm.log_call(missed)
    (task,) = fake.tasks()
    props = task["properties"]
    assert props["hs_task_type"] == "CALL" and props["hs_task_status"] == "NOT_STARTED"
    assert props["hs_task_subject"] == "Call back Grace Hopper"
    assert props["hubspot_owner_id"] == alice  # the agent whose phone rang
    assert props["hs_timestamp"] == str(int(ended.timestamp() * 1000) + 30 * 60 * 1000)
    assert task["associations"]["contacts"] == [contact]
    # A later sync of the same call (the CDR came) updates the call, never a second task.
    crm.log_call(replace(missed, crm_id=result.crm_id, crm_task_id=result.task_id, duration_s=41))
    assert len(fake.tasks()) == 1
    # An answered call gets none.
    crm.log_call(snapshot("p-answered", "+33612345636"))
    assert len(fake.tasks()) == 1


def test_logging_at_the_start_shows_the_live_status(fake) -> None:  # type: ignore[no-untyped-def]
    crm = configured(fake, log_at="start")
    ringing = snapshot("p-live", "+33612345637", stage="ringing", ended=False, outcome=None,
                       duration_s=None)  # fmt: skip
    result = crm.log_call(ringing)
    assert fake.calls()[0]["properties"]["hs_call_status"] == "RINGING"
    crm.log_call(replace(ringing, stage="answered", crm_id=result.crm_id))
    assert fake.calls()[0]["properties"]["hs_call_status"] == "IN_PROGRESS"
    crm.log_call(replace(ringing, stage="ended", ended=True, outcome="answered", duration_s=30,
                         crm_id=result.crm_id))  # fmt: skip
    (call,) = fake.calls()
    assert call["properties"]["hs_call_status"] == "COMPLETED"


def test_a_contact_found_after_the_record_was_made_is_attached(fake) -> None:  # type: ignore[no-untyped-def]
    crm = configured(fake)
    first = crm.log_call(snapshot("p-late", "+33612345638"))
    assert fake.calls()[0]["associations"] == {}
    contact = fake.add_contact(firstname="Late", phone="06 12 34 56 38")
    crm.log_call(snapshot("p-late", "+33612345638", crm_id=first.crm_id, duration_s=50))
    assert fake.calls()[0]["associations"]["contacts"] == [contact]


def test_an_agent_missing_in_hubspot_is_a_visible_note_not_a_failure(fake) -> None:  # type: ignore[no-untyped-def]
    result = configured(fake).log_call(snapshot("p-no-owner", "+33612345639", agent="1001"))
    assert result.owner_id is None and len(fake.calls()) == 1
    assert (
        result.contact_note == "alice@example.com is not a HubSpot user (no owner found by email)"
    )


def test_a_missed_call_task_follows_the_late_truth(fake) -> None:  # type: ignore[no-untyped-def]
    # Events arrive out of order: the call first looks missed with nobody's phone named,
    # then the agent whose phone rang is learnt, then that the call was answered after all.
    alice = fake.add_owner("alice@example.com")
    crm = configured(fake, missed_call_task__enabled=True)
    missed = snapshot("p-late-truth", "+33612345640", outcome="no_answer", duration_s=20)
    first = crm.log_call(missed)
    (task,) = fake.tasks()
    assert task["properties"].get("hubspot_owner_id") is None
    second = crm.log_call(
        replace(missed, crm_id=first.crm_id, crm_task_id=first.task_id, agent="1001")
    )
    assert second.task_id == first.task_id
    assert fake.tasks()[0]["properties"]["hubspot_owner_id"] == alice
    third = crm.log_call(replace(missed, crm_id=first.crm_id, crm_task_id=first.task_id,
                                 agent="1001", outcome="answered"))  # fmt: skip
    assert third.task_id is None and fake.tasks() == []


def test_an_update_clears_an_owner_that_no_longer_holds(fake) -> None:  # type: ignore[no-untyped-def]
    alice = fake.add_owner("alice@example.com")
    crm = configured(fake)
    tie = crm.log_call(snapshot("p-tie", "+33612345641", agent="1001"))
    assert fake.calls()[0]["properties"]["hubspot_owner_id"] == alice
    crm.log_call(snapshot("p-tie", "+33612345641", agent="7777", crm_id=tie.crm_id))
    assert fake.calls()[0]["properties"].get("hubspot_owner_id") is None


def test_a_failed_task_never_loses_the_call_it_follows(fake) -> None:  # type: ignore[no-untyped-def]
    crm = configured(fake, missed_call_task__enabled=True)
    fake.fail_next(1, 429, path_prefix="/crm/v3/objects/tasks", retry_after=2)
    result = crm.log_call(snapshot("p-task-429", "+33612345642", outcome="no_answer"))
    assert result.crm_id == fake.calls()[0]["id"] and result.task_id is None
    assert result.incomplete is not None and result.incomplete.status == 429
    retried = crm.log_call(snapshot("p-task-429", "+33612345642", outcome="no_answer",
                                    crm_id=result.crm_id))  # fmt: skip
    assert retried.task_id is not None and len(fake.calls()) == 1 and len(fake.tasks()) == 1
