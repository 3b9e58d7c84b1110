"""The mapping format's building blocks, each shown on the smallest payload that needs it.

The platforms' own tests (tests/platforms/) prove the shipped files on real payloads;
these pin the format features a user writing a new file relies on.
"""

from __future__ import annotations

import re
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


# --- Expressions (`expr:`), conditions and Jinja templates -------------------------------


def test_expr_picks_a_side_and_its_result_goes_through_type() -> None:
    # Voximplant's case: the customer is the caller on an inbound call, the callee otherwise.
    m = mapping("""
events:
  - fields:
      call_id: id
      stage: {value: cdr}
      external_number: {expr: "phone_a if is_incoming else phone_b", type: phone}
""")
    body = {"id": 1, "phone_a": "33612345678", "phone_b": "33187654321"}
    (inbound,) = events(m, {**body, "is_incoming": True})
    (outbound,) = events(m, {**body, "is_incoming": False})
    assert (inbound["external_number"], outbound["external_number"]) == (
        "+33612345678",
        "+33187654321",
    )
    assert inbound["external_number_raw"] == "33612345678"


def test_expr_reads_missing_keys_as_absent_and_its_result_goes_through_map() -> None:
    # UIS's case: talk time above zero means answered; no number, no outcome here.
    m = mapping("""
events:
  - fields:
      call_id: id
      stage: {value: cdr}
      outcome:
        expr: "(talk | float > 0) if talk is numeric"
        map: {"true": answered, "false": no_answer}
      agent: {expr: "employee.id", default: nobody}
""")
    outcomes = [events(m, {"id": 1, **extra})[0].get("outcome") for extra in (
        {"talk": 12}, {"talk": 0}, {"talk": "12"}, {"talk": "soon"}, {},
    )]  # fmt: skip
    assert outcomes == ["answered", "no_answer", "answered", None, None]
    # `employee` is absent, so is `employee.id`: the default applies, nothing raises.
    assert events(m, {"id": 1})[0]["agent"] == "nobody"


def test_expr_sees_this_delivery_and_keys_that_are_not_names() -> None:
    m = mapping("""
split: items
events:
  - fields:
      call_id: {expr: "this['call-id'] ~ '@' ~ delivery.account"}
      stage: {value: ringing}
      # A payload key named like a dict method is the key, not the method.
      agent: {expr: "values.first"}
""")
    body = {"account": "acme", "items": [{"call-id": "c1", "values": {"first": "7"}}]}
    (event,) = events(m, body)
    assert (event["call_id"], event["agent"]) == ("c1@acme", "7")


def test_when_expr_is_a_condition_beside_the_other_forms() -> None:
    m = mapping("""
ignore:
  - {expr: "duration is numeric and duration | int == 0", event: hangup}
events:
  - when: {event: hangup, expr: "request is search('^[+]?[0-9]{7,}@')"}
    fields: {call_id: id, stage: {value: ended}, direction: {value: outbound}}
  - when: {event: hangup}
    fields: {call_id: id, stage: {value: ended}, direction: {value: internal}}
""")
    base = {"id": 1, "event": "hangup", "duration": 5}
    assert events(m, {**base, "request": "+33612345678@realm"})[0]["direction"] == "outbound"
    assert events(m, {**base, "request": "1002@realm"})[0]["direction"] == "internal"
    assert events(m, base)[0]["direction"] == "internal"  # no `request`: the condition is false
    result = map_payload(m, {**base, "duration": "0"}, default_region="FR")
    assert result.ignored == "ignore rule 0 matched"


def test_expr_that_fails_on_a_payload_is_a_mapping_error_naming_the_field() -> None:
    m = mapping("""
events:
  - fields:
      call_id: id
      stage: {value: ringing}
      talk_s: {expr: "talk + 1"}
""")
    with pytest.raises(MappingError, match=r"talk_s: 'talk \+ 1' failed: TypeError"):
        events(m, {"id": 1, "talk": "12"})


def test_templates_are_jinja_and_absent_when_a_value_they_print_is() -> None:
    m = mapping("""
dedupe_key: {template: "{{ id }}:{{ event }}"}
events:
  - fields:
      call_id: {template: "{{ id }}{% if leg %}-{{ leg }}{% endif %}"}
      stage: {value: ringing}
""")
    result = map_payload(m, {"id": "c", "event": "ring", "leg": "b"}, default_region="FR")
    assert (result.dedupe_key, result.events[0].call_id) == ("c:ring", "c-b")
    # No `event`: the template is absent and the dedupe key falls back to the body's digest.
    result = map_payload(m, {"id": "c", "event": ""}, default_region="FR")
    assert result.dedupe_key.startswith("sha256:") and result.events[0].call_id == "c"


def test_templates_written_before_jinja_still_read_the_same() -> None:
    m = mapping("""
dedupe_key: {template: "{payload.call_id}:{$.kind}"}
events:
  - root: payload
    fields:
      call_id: {template: "{call_id}/{vars.Bridge-ID}/{legs.0}"}
      stage: {value: ringing}
      variables: {rest: true}
""")
    assert m.dedupe_key is not None
    assert m.dedupe_key.template == "{{ payload.call_id }}:{{ delivery.kind }}"
    body = {"kind": "k", "payload": {"call_id": "c", "vars": {"Bridge-ID": "a"}, "legs": ["l"],
                                     "extra": 1}}  # fmt: skip
    result = map_payload(m, body, default_region="FR")
    assert result.dedupe_key == "c:k"
    (event,) = result.events
    # Keys a template reads are not repeated among the `rest` variables.
    assert (event.call_id, event.variables) == ("c/a/l", {"extra": 1})


def test_an_outcome_the_map_does_not_list_is_left_to_inference_not_refused() -> None:
    m = mapping("""
events:
  - fields:
      call_id: id
      stage: {value: ended}
      outcome: {path: cause, map: {USER_BUSY: busy}}
      direction: {path: dir, map: {in: inbound}}
""")
    (event,) = events(m, {"id": 1, "cause": "NEW_CAUSE", "dir": "in"})
    assert "outcome" not in event
    with pytest.raises(MappingError, match="direction: dir 'sideways' is not one of: in"):
        events(m, {"id": 1, "cause": "USER_BUSY", "dir": "sideways"})


def agent_of(source: str, payload: dict[str, Any]) -> Any:
    """The `agent` an expression makes of a payload (None when absent)."""
    body = {**yaml.safe_load(BASE), "events": [{"fields": {
        "call_id": "id", "stage": {"value": "ringing"}, "agent": {"expr": source}}}]}  # fmt: skip
    (event,) = events(PlatformMapping.model_validate(body), {"id": 1, **payload})
    return event.get("agent")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("'x' * n * 100", "over the limit of 10000"),
        ("n ** n ** 3", "too large a number"),
        ("'%0999999d' % n", "'%' formatting of text is not available"),
        ("'{:>999999}'.format(n)", "attribute 'format' of 'str' object is unsafe"),
        ("text.ljust(n * 1000)", "attribute 'ljust' of 'str' object is unsafe"),
        ("range(n * 1000) | list", "range() of 1000000 items"),
        ("range(900) | map('string') | join(text * 20)", "over the limit of 10000"),
    ],
)
def test_an_expression_cannot_build_huge_values(source: str, reason: str) -> None:
    with pytest.raises(MappingError, match="agent: .*" + re.escape(reason)):
        agent_of(source, {"n": 1000, "text": "abcdefghij"})


def test_an_expression_cannot_reach_python() -> None:
    # The sandbox makes private attributes undefined: absent, never the class itself.
    assert agent_of("this.__class__", {}) is None
    assert agent_of("id.__class__.__mro__", {}) is None
    with pytest.raises(MappingError, match=r"agent: .*unsafe"):
        agent_of("this.update({'id': 2})", {})  # the payload is read-only


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"agent": {"expr": "a +"}}, "events.0.fields.agent.expr"),
        ({"agent": {"template": "{% for x in y %}{{ x }}{% endfor %}"}}, "for %} is not"),
        ({"agent": {"expr": "a", "path": "b"}}, "give only one of path, value, template, expr"),
    ],
)
def test_expression_errors_are_schema_errors(fields: dict[str, Any], expected: str) -> None:
    body = {**yaml.safe_load(BASE), "events": [{"fields": {
        "call_id": "id", "stage": {"value": "ringing"}, **fields}}]}  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(expected)):
        PlatformMapping.model_validate(body)


def test_when_expr_syntax_error_names_the_rule() -> None:
    body = {**yaml.safe_load(BASE), "events": [{"when": {"expr": "a =="}, "fields": {
        "call_id": "id", "stage": {"value": "ringing"}}}]}  # fmt: skip
    with pytest.raises(ValueError, match=r"events\.0\.when\n.*expr: expression error"):
        PlatformMapping.model_validate(body)
