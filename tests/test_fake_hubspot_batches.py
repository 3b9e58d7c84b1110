"""The fake HubSpot's batch endpoints, through the real hubspot-api-client's methods.

A batching worker is only as right as the fake it is tested against: these tests pin
what the fake answers (HubSpot's answers, see the fake's docstring) for batch create,
read, update and upsert, the contact search by many numbers, and the scripted failures
a batching test needs (a 429 or a 5xx on a batch, one bad input inside a batch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.objects.calls import ApiException
from urllib3.util.retry import Retry

from tests.conftest import TOKEN
from tests.fake_hubspot import FakeHubSpot

ASSOC_CALL_TO_CONTACT = 194
ASSOC_TASK_TO_CONTACT = 204


@pytest.fixture
def fake(hubspot: FakeHubSpot) -> Iterator[FakeHubSpot]:
    hubspot.reset()
    yield hubspot
    hubspot.reset()


def client_for(fake: FakeHubSpot) -> HubSpot:
    return HubSpot(access_token=TOKEN, host=fake.url, retry=Retry(0, redirect=False))


def call_input(
    external_id: str, contact_id: str | None = None, trace: str | None = None, **props: str
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "properties": {
            "hs_timestamp": "1773835200000",
            "hs_call_title": f"Call {external_id}",
            "hs_call_direction": "INBOUND",
            "hs_call_status": "COMPLETED",
            "hs_call_external_id": external_id,
            **props,
        },
        "associations": [],
    }
    if contact_id:
        spec = {
            "associationCategory": "HUBSPOT_DEFINED",
            "associationTypeId": ASSOC_CALL_TO_CONTACT,
        }
        item["associations"].append({"to": {"id": contact_id}, "types": [spec]})
    if trace:
        item["objectWriteTraceId"] = trace
    return item


def batch_requests(fake: FakeHubSpot) -> list[dict[str, Any]]:
    return [r for r in fake.requests() if "/batch/" in r["path"]]


def error_body(exc: ApiException | ContactsApiException) -> dict[str, Any]:
    return json.loads(exc.body)


# -- batch create ---------------------------------------------------------------------


def test_batch_create_makes_calls_with_their_associations_in_one_request(
    fake: FakeHubSpot,
) -> None:
    contacts = [fake.add_contact(firstname=f"C{i}", phone=f"+3361234567{i}") for i in range(3)]
    inputs = [call_input(f"ext-{i}", contacts[i]) for i in range(3)]
    client = client_for(fake)

    answer, status, _ = client.crm.objects.calls.batch_api.create_with_http_info({"inputs": inputs})

    assert status == 201
    assert answer.status == "COMPLETE" and len(answer.results) == 3
    by_external = {c["properties"]["hs_call_external_id"]: c for c in fake.calls()}
    for i in range(3):
        assert by_external[f"ext-{i}"]["associations"] == {"contacts": [contacts[i]]}
    # One HubSpot request for three logged calls, recorded like any other.
    assert [(r["method"], r["path"], r["status"]) for r in fake.requests()] == [
        ("POST", "/crm/v3/objects/calls/batch/create", 201)
    ]


def test_batch_results_are_not_in_input_order_so_callers_match_them_by_content(
    fake: FakeHubSpot,
) -> None:
    inputs = [call_input(f"ext-{i}") for i in range(4)]
    answer = client_for(fake).crm.objects.calls.batch_api.create({"inputs": inputs})

    returned = [r.properties["hs_call_external_id"] for r in answer.results]
    assert sorted(returned) == ["ext-0", "ext-1", "ext-2", "ext-3"]
    assert returned != ["ext-0", "ext-1", "ext-2", "ext-3"]


def test_more_than_100_inputs_is_refused_whole(fake: FakeHubSpot) -> None:
    inputs = [call_input(f"ext-{i}") for i in range(101)]
    with pytest.raises(ApiException) as caught:
        client_for(fake).crm.objects.calls.batch_api.create({"inputs": inputs})

    assert caught.value.status == 400
    body = error_body(caught.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert "maximum number of inputs supported in a batch is 100" in body["message"]
    assert fake.calls() == []


def test_one_invalid_input_without_trace_ids_fails_the_whole_batch(fake: FakeHubSpot) -> None:
    inputs = [call_input("ok-1"), call_input("bad", hs_call_status="LOST"), call_input("ok-2")]
    with pytest.raises(ApiException) as caught:
        client_for(fake).crm.objects.calls.batch_api.create({"inputs": inputs})

    assert caught.value.status == 400
    body = error_body(caught.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert "LOST was not one of the allowed options" in body["message"]
    assert fake.calls() == []  # nothing created: the good inputs must be sent again


def test_one_invalid_input_with_trace_ids_is_a_207_and_the_others_are_created(
    fake: FakeHubSpot,
) -> None:
    inputs = [
        call_input("ok-1", trace="t1"),
        call_input("bad", trace="t2", hs_call_status="LOST"),
        call_input("ok-2", trace="t3"),
    ]
    answer, status, _ = client_for(fake).crm.objects.calls.batch_api.create_with_http_info(
        {"inputs": inputs}
    )

    assert status == 207
    assert answer.num_errors == 1
    (error,) = answer.errors
    assert error.category == "VALIDATION_ERROR"
    assert error.context == {"objectWriteTraceId": ["t2"]}
    assert "LOST was not one of the allowed options" in error.message
    assert {r.object_write_trace_id for r in answer.results} == {"t1", "t3"}
    assert sorted(c["properties"]["hs_call_external_id"] for c in fake.calls()) == [
        "ok-1",
        "ok-2",
    ]


def test_an_unknown_contact_in_an_inline_association_is_that_inputs_error(
    fake: FakeHubSpot,
) -> None:
    known = fake.add_contact(firstname="Known", phone="+33612345670")
    inputs = [call_input("a", known, trace="a"), call_input("b", "999", trace="b")]
    answer, status, _ = client_for(fake).crm.objects.calls.batch_api.create_with_http_info(
        {"inputs": inputs}
    )

    assert status == 207
    assert [e.context for e in answer.errors] == [{"objectWriteTraceId": ["b"]}]
    assert [c["associations"] for c in fake.calls()] == [{"contacts": [known]}]


def test_a_scripted_bad_input_is_refused_then_accepted_alone(fake: FakeHubSpot) -> None:
    fake.reject_input("calls", "hs_call_external_id", "poison", count=1)
    client = client_for(fake)
    inputs = [call_input("fine", trace="1"), call_input("poison", trace="2")]

    answer, status, _ = client.crm.objects.calls.batch_api.create_with_http_info({"inputs": inputs})
    assert status == 207
    assert [e.context for e in answer.errors] == [{"objectWriteTraceId": ["2"]}]
    # Split out and sent alone, it goes through (count=1): a transient refusal.
    retry = client.crm.objects.calls.batch_api.create({"inputs": [call_input("poison")]})
    assert [r.properties["hs_call_external_id"] for r in retry.results] == ["poison"]
    assert sorted(c["properties"]["hs_call_external_id"] for c in fake.calls()) == [
        "fine",
        "poison",
    ]


def test_tasks_are_batch_created_with_their_contacts(fake: FakeHubSpot) -> None:
    contact = fake.add_contact(firstname="Ann", phone="+33612345670")
    spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": ASSOC_TASK_TO_CONTACT}
    inputs = [
        {
            "properties": {
                "hs_timestamp": "1773835200000",
                "hs_task_subject": "Call back",
                "hs_task_type": "CALL",
                "hs_task_status": "NOT_STARTED",
            },
            "associations": [{"to": {"id": contact}, "types": [spec]}],
        }
    ]
    answer, status, _ = client_for(fake).crm.objects.tasks.batch_api.create_with_http_info(
        {"inputs": inputs}
    )

    assert status == 201 and len(answer.results) == 1
    assert [t["associations"] for t in fake.tasks()] == [{"contacts": [contact]}]


# -- scripted failures on a batch ---------------------------------------------------------


def test_a_429_on_the_next_batch_creates_nothing_and_spares_other_requests(
    fake: FakeHubSpot,
) -> None:
    fake.fail_next_batch(429, object_type="calls")
    client = client_for(fake)

    single = client.crm.objects.calls.basic_api.create(call_input("single"))  # not a batch
    with pytest.raises(ApiException) as caught:
        client.crm.objects.calls.batch_api.create({"inputs": [call_input("a"), call_input("b")]})
    assert caught.value.status == 429
    assert error_body(caught.value)["policyName"] == "TEN_SECONDLY_ROLLING"
    assert caught.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert [c["id"] for c in fake.calls()] == [single.id]

    again = client.crm.objects.calls.batch_api.create({"inputs": [call_input("a")]})
    assert len(again.results) == 1


def test_a_5xx_on_a_batch_creates_nothing(fake: FakeHubSpot) -> None:
    fake.fail_next_batch(503)
    with pytest.raises(ApiException) as caught:
        client_for(fake).crm.objects.calls.batch_api.create({"inputs": [call_input("a")]})
    assert caught.value.status == 503
    assert fake.calls() == []


def test_a_lost_batch_answer_leaves_the_calls_and_a_search_finds_them(
    fake: FakeHubSpot,
) -> None:
    # The batch is done but its answer never arrives (a proxy's 504): the retry must not
    # create them again. Calls have no unique property, so they are found by a search.
    fake.lose_responses(1, "/crm/v3/objects/calls/batch/create")
    client = client_for(fake)
    with pytest.raises(ApiException) as caught:
        client.crm.objects.calls.batch_api.create(
            {"inputs": [call_input("x-1"), call_input("x-2")]}
        )
    assert caught.value.status == 504
    assert len(fake.calls()) == 2

    page = client.crm.objects.calls.search_api.do_search(
        {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "hs_call_external_id",
                            "operator": "IN",
                            "values": ["x-1", "x-2", "x-3"],
                        }
                    ]
                }
            ],
            "properties": ["hs_call_external_id"],
            "limit": 100,
        }
    )
    assert sorted(r.properties["hs_call_external_id"] for r in page.results) == ["x-1", "x-2"]


# -- batch read, update, upsert ---------------------------------------------------------


def test_batch_read_answers_207_with_the_ids_not_found(fake: FakeHubSpot) -> None:
    client = client_for(fake)
    created = client.crm.objects.calls.batch_api.create({"inputs": [call_input("r-1")]})
    call_id = created.results[0].id

    answer, status, _ = client.crm.objects.calls.batch_api.read_with_http_info(
        {"inputs": [{"id": call_id}, {"id": "404"}], "properties": ["hs_call_external_id"]}
    )

    assert status == 207
    assert [(r.id, r.properties) for r in answer.results] == [
        (call_id, {"hs_call_external_id": "r-1"})
    ]
    (error,) = answer.errors
    assert error.category == "OBJECT_NOT_FOUND"
    assert error.context == {"ids": ["404"]}
    assert error.message.startswith("Could not get some CALL objects")


def test_batch_read_of_existing_ids_is_200(fake: FakeHubSpot) -> None:
    client = client_for(fake)
    created = client.crm.objects.calls.batch_api.create(
        {"inputs": [call_input("r-1"), call_input("r-2")]}
    )
    ids = sorted(r.id for r in created.results)
    answer, status, _ = client.crm.objects.calls.batch_api.read_with_http_info(
        {"inputs": [{"id": i} for i in ids], "properties": []}
    )
    assert status == 200
    assert sorted(r.id for r in answer.results) == ids


def test_calls_cannot_be_read_or_upserted_by_their_external_id(fake: FakeHubSpot) -> None:
    # hs_call_external_id is not a unique property, and calls can have none.
    client = client_for(fake)
    with pytest.raises(ApiException) as read:
        client.crm.objects.calls.batch_api.read(
            {"inputs": [{"id": "x-1"}], "idProperty": "hs_call_external_id", "properties": []}
        )
    with pytest.raises(ApiException) as upsert:
        client.crm.objects.calls.batch_api.upsert(
            {
                "inputs": [
                    {
                        "id": "x-1",
                        "idProperty": "hs_call_external_id",
                        "properties": {"hs_call_title": "t"},
                    }
                ]
            }
        )
    for caught in (read, upsert):
        assert caught.value.status == 400
        assert "non-unique 0-48 property hs_call_external_id" in error_body(caught.value)["message"]
    assert fake.calls() == []


def test_batch_update_updates_and_reports_missing_ids_in_a_207(fake: FakeHubSpot) -> None:
    client = client_for(fake)
    created = client.crm.objects.calls.batch_api.create({"inputs": [call_input("u-1")]})
    call_id = created.results[0].id

    answer, status, _ = client.crm.objects.calls.batch_api.update_with_http_info(
        {
            "inputs": [
                {"id": call_id, "properties": {"hs_call_title": "Updated"}},
                {"id": "404", "properties": {"hs_call_title": "Nobody"}, "objectWriteTraceId": "g"},
            ]
        }
    )

    assert status == 207
    assert [r.id for r in answer.results] == [call_id]
    (error,) = answer.errors
    assert error.category == "OBJECT_NOT_FOUND"
    assert error.context == {"ids": ["404"], "objectWriteTraceId": ["g"]}
    assert fake.calls()[0]["properties"]["hs_call_title"] == "Updated"


def test_batch_update_with_a_bad_value_or_a_duplicate_id_changes_nothing(
    fake: FakeHubSpot,
) -> None:
    client = client_for(fake)
    created = client.crm.objects.calls.batch_api.create(
        {"inputs": [call_input("u-1"), call_input("u-2")]}
    )
    first, second = sorted(r.id for r in created.results)
    bad_value = [
        {"id": first, "properties": {"hs_call_title": "Changed"}},
        {"id": second, "properties": {"hs_call_status": "LOST"}},
    ]
    duplicate = [
        {"id": first, "properties": {"hs_call_title": "Once"}},
        {"id": first, "properties": {"hs_call_title": "Twice"}},
    ]
    for inputs, expected in ((bad_value, "LOST"), (duplicate, "Duplicate IDs")):
        with pytest.raises(ApiException) as caught:
            client.crm.objects.calls.batch_api.update({"inputs": inputs})
        assert caught.value.status == 400
        assert expected in error_body(caught.value)["message"]
    titles = sorted(c["properties"]["hs_call_title"] for c in fake.calls())
    assert titles == ["Call u-1", "Call u-2"]


# -- contacts for many numbers in one search -------------------------------------------------


def test_one_search_finds_the_contacts_of_many_numbers_page_by_page(fake: FakeHubSpot) -> None:
    numbers = [f"+336123456{i:02d}" for i in range(12)]
    for i, number in enumerate(numbers):
        fake.add_contact(firstname=f"N{i}", phone=number)
    fake.add_contact(firstname="Other", phone="+33699999999")
    national = [n.removeprefix("+33") for n in numbers]
    search = {
        "filterGroups": [
            {
                "filters": [
                    {
                        "propertyName": "hs_searchable_calculated_phone_number",
                        "operator": "IN",
                        "values": national,
                    }
                ]
            },
            {
                "filters": [
                    {
                        "propertyName": "hs_searchable_calculated_mobile_number",
                        "operator": "IN",
                        "values": national,
                    }
                ]
            },
        ],
        "properties": ["phone", "mobilephone", "firstname"],
        "limit": 10,
    }
    client = client_for(fake)

    first = client.crm.contacts.search_api.do_search(search)
    second = client.crm.contacts.search_api.do_search({**search, "after": first.paging.next.after})

    assert first.total == 12 and len(first.results) == 10
    assert second.paging is None and len(second.results) == 2
    found = {r.properties["phone"] for r in [*first.results, *second.results]}
    assert found == set(numbers)


# -- how batches count against the limits ------------------------------------------------------


def test_a_batch_counts_as_one_request_against_the_ten_second_limit() -> None:
    with FakeHubSpot(token=TOKEN, rate_limit=(3, 10.0)) as fake:
        client = client_for(fake)
        for batch in range(3):
            inputs = [call_input(f"b{batch}-{i}") for i in range(100)]
            client.crm.objects.calls.batch_api.create({"inputs": inputs})
        with pytest.raises(ApiException) as caught:
            client.crm.objects.calls.batch_api.create({"inputs": [call_input("late")]})

        assert len(fake.calls()) == 300
        assert caught.value.status == 429
        assert error_body(caught.value)["policyName"] == "TEN_SECONDLY_ROLLING"


def test_a_batch_read_is_not_a_search_for_the_per_second_search_limit() -> None:
    with FakeHubSpot(token=TOKEN, search_per_second=1) as fake:
        client = client_for(fake)
        for _ in range(4):
            client.crm.objects.calls.batch_api.read({"inputs": [], "properties": []})
        client.crm.contacts.search_api.do_search({"filterGroups": [], "limit": 1})
        with pytest.raises(ContactsApiException) as caught:
            client.crm.contacts.search_api.do_search({"filterGroups": [], "limit": 1})

        assert caught.value.status == 429
        assert error_body(caught.value)["policyName"] == "SECONDLY"
        assert [r["status"] for r in batch_requests(fake)] == [200, 200, 200, 200]
