"""The mapping format's building blocks, each shown on the smallest payload that needs it.

The platforms' own tests (tests/platforms/) prove the shipped files on real payloads;
these pin the format features a user writing a new file relies on.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from webhook_receiver.mapping import MappingError, PlatformMapping, map_payload

BASE = """
kind: platform
platform: demo
auth: {location: none}
"""


def mapping(text: str) -> PlatformMapping:
    return PlatformMapping.model_validate(yaml.safe_load(BASE + text))


def events(m: PlatformMapping, payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [e.to_json() for e in map_payload(m, payload, default_region="FR").events]


def test_split_maps_each_item_of_a_batch_and_reads_the_envelope_with_dollar() -> None:
    m = mapping("""
split: callbacks
events:
  - when: {type: finished}
    root: finished
    fields:
      call_id: id
      stage: {value: cdr}
      variables: {path: $.account, rest: false}
""")
    body = {"account": {"a": 1}, "callbacks": [
        {"type": "finished", "finished": {"id": 1}}, {"type": "finished", "finished": {"id": 2}},
    ]}  # fmt: skip
    assert [(e["call_id"], e["variables"]) for e in events(m, body)] == [
        ("1", {"a": 1}),
        ("2", {"a": 1}),
    ]
    with pytest.raises(MappingError, match=r"callbacks\[1\]: no event rule matches"):
        map_payload(m, {"callbacks": [body["callbacks"][0], {"type": "x"}]}, default_region="FR")


def test_unfilled_placeholders_and_quoted_values_of_template_bodies() -> None:
    m = mapping("""
strip_quotes: true
absent_values: ['\\{\\{.*\\}\\}', 'null']
events:
  - fields:
      call_id: id
      stage: {value: ringing}
      agent: [ext, employee]
      external_number: {path: number, type: phone}
      variables: {rest: true}
""")
    (event,) = events(m, {"id": '"7"', "ext": "{{extension_phone_number}}", "employee": '"Ann"',
                          "number": '"79260000000"', "source": '"va"', "tags": "null"})  # fmt: skip
    assert event["variables"] == {"source": "va"}
    assert (event["call_id"], event["agent"], event["external_number"]) == (
        "7",
        "Ann",
        "+79260000000",
    )


def test_gregorian_seconds_and_booleans_from_form_bodies() -> None:
    m = mapping("""
events:
  - when: {is_internal_leg: false}
    fields:
      call_id: call_id
      stage: {value: ringing}
      occurred_at: {path: timestamp, type: gregorian_s}
""")
    # KAZOO's sample: 63724349409 Gregorian seconds is 2019-05-06T08:10:09Z.
    for flag in (False, "false"):  # a JSON body and a form body say it differently
        (event,) = events(m, {"call_id": "c", "is_internal_leg": flag, "timestamp": "63724349409"})
        assert event["occurred_at"] == "2019-05-06T08:10:09Z"


def test_variables_sent_as_json_text() -> None:
    m = mapping("""
events:
  - fields:
      call_id: id
      stage: {value: cdr}
      variables: {path: call_data, json_text: true}
""")
    (event,) = events(m, {"id": 1, "call_data": '{"campaign": "spring"}'})
    assert event["variables"] == {"campaign": "spring"}
    with pytest.raises(MappingError, match="variables: call_data: not JSON text"):
        events(m, {"id": 1, "call_data": "{broken"})


def test_a_leg_names_the_call_it_belongs_to() -> None:
    m = mapping("""
events:
  - fields:
      call_id: call_id
      parent_call_id: other_leg_call_id
      stage: {value: ringing}
""")
    (event,) = events(m, {"call_id": "B", "other_leg_call_id": "A"})
    assert (event["call_id"], event["parent_call_id"]) == ("B", "A")


def test_regex_conditions_absent_unmapped_values_and_several_variable_blocks() -> None:
    m = mapping("""
events:
  - when: {dialled: {regex: '^\\+?\\d{7,}$'}}
    fields:
      call_id: id
      stage: {value: ringing}
      direction: {value: outbound}
      outcome: {path: cause, map: {USER_BUSY: busy}, unmapped: absent}
      variables: {path: [app_vars, channel_vars]}
  - fields:
      call_id: id
      stage: {value: ringing}
      direction: {value: internal}
""")
    body = {"id": 1, "dialled": "+33612345678", "cause": "NORMAL_CLEARING",
            "app_vars": {"a": 1}, "channel_vars": {"b": 2}}  # fmt: skip
    (event,) = events(m, body)
    assert (event["direction"], event.get("outcome"), event["variables"]) == (
        "outbound",
        None,
        {"a": 1, "b": 2},
    )
    (internal,) = events(m, {**body, "dialled": "1002"})
    assert internal["direction"] == "internal"
    (busy,) = events(m, {**body, "cause": "USER_BUSY"})
    assert busy["outcome"] == "busy"
