"""UIS template check: the templates of docs/platforms/uis.md pass; broken ones say why, where.

``check_template`` fills the placeholders as UIS does (values JSON-encoded), parses and maps
the body with the real mappings/uis.yaml. ``callhook uis check-template`` prints the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, Environment
from webhook_receiver.cli.platforms import uis
from webhook_receiver.cli.uis_templates import check_template, find_placeholders, inspect_template
from webhook_receiver.mapping import load_mappings

DOC = ROOT / "docs" / "platforms" / "uis.md"


def documented_templates() -> dict[str, str]:
    blocks = re.findall(r"```json\n(\{.*?\})\n```", DOC.read_text(), flags=re.S)
    return {re.search(r'"event": "(\w+)"', b).group(1): b for b in blocks}  # type: ignore[union-attr]


TEMPLATES = documented_templates()
EXPECTED = {
    "incoming_call": "incoming_call → ringing, inbound, call 237859081",
    "waiting_for_answer": "waiting_for_answer → ringing, inbound, call 237859081, agent 25",
    "talk_started": "talk_started → answered, inbound, call 237859081, agent 25",
    "talk_finished": "talk_finished → answered, inbound, call 237859081, agent 25",
    "call_finished": "call_finished → cdr, inbound, call 237859081, agent 25",
    "lost_call": "lost_call → ended, inbound, call 237859081",
    "outbound_call": "outbound_call → ringing, outbound, call 237859081, agent 25",
    "recording_ready": "recording_ready → answered, call 237859081, agent 25",
}


@pytest.fixture(scope="module")
def mapping():  # type: ignore[no-untyped-def]
    return load_mappings(ROOT / "mappings").platforms["uis"]


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# -- the documented templates ---------------------------------------------------------------------
def test_every_event_of_the_docs_has_a_template() -> None:
    assert set(TEMPLATES) == set(EXPECTED)


@pytest.mark.parametrize("event", sorted(EXPECTED))
def test_documented_template_passes_and_says_what_it_makes(mapping, event: str) -> None:  # type: ignore[no-untyped-def]
    report = inspect_template(TEMPLATES[event], mapping)
    assert check_template(TEMPLATES[event], mapping) == []
    assert report.notes == []
    assert report.summary() == EXPECTED[event]
    (canonical,) = report.canonical
    assert canonical["external_number"] == "+79261234567"
    assert canonical["company_number"] == "+74951234567"


def test_template_copied_with_its_markdown_fence_passes(mapping) -> None:  # type: ignore[no-untyped-def]
    assert check_template("```json\n" + TEMPLATES["lost_call"] + "\n```\n", mapping) == []


def test_planfix_template_without_event_key_is_read_as_call_finished(mapping) -> None:  # type: ignore[no-untyped-def]
    planfix = TEMPLATES["call_finished"].replace('  "event": "call_finished",\n', "")
    report = inspect_template(planfix, mapping)
    assert report.problems == []
    assert report.event == "call_finished"
    assert any("Planfix template" in note for note in report.notes)


def test_an_ignored_event_is_fine_and_says_so(mapping) -> None:  # type: ignore[no-untyped-def]
    text = '{"event": "outbound_leg", "call_session_id": {{call_session_id}}}'
    report = inspect_template(text, mapping)
    assert report.problems == []
    assert report.summary() == "outbound_leg: known and ignored by callhook (answered 200, no call)"


# -- broken templates: each problem, located --------------------------------------------------
def test_trailing_comma_is_invalid_json_at_its_line(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["talk_started"].replace('"leg_ids": {{leg_ids}}', '"leg_ids": {{leg_ids}},')
    (problem,) = check_template(broken, mapping)
    assert problem.startswith("not valid JSON once UIS fills in the values: ")
    assert f"at line {broken.count(chr(10)) + 1}, column 1" in problem  # the closing brace
    assert problem.endswith("    }\n    ^")


def test_missing_comma_points_at_the_next_key(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["lost_call"].replace(
        '"scenario_name": {{scenario_name}},', '"scenario_name": {{scenario_name}}'
    )
    (problem,) = check_template(broken, mapping)
    assert "Expecting ',' delimiter" in problem
    assert f"at line {line_of(broken, 'wait_time_duration')}, column 3" in problem


def test_unknown_variable_is_named_with_a_suggestion(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["incoming_call"].replace("{{contact_phone_number}}", "{{contact_phone}}")
    (problem, *_) = check_template(broken, mapping)
    line = line_of(broken, "{{contact_phone}}")
    assert problem.startswith(
        f"line {line}: {{{{contact_phone}}}} is not a UIS variable "
        "(did you mean {{contact_phone_number}}?)"
    )


def test_quoted_text_placeholder_is_reported_once_and_the_check_goes_on(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["incoming_call"].replace(
        "{{contact_phone_number}}", '"{{contact_phone_number}}"'
    )
    (quoted,) = check_template(broken, mapping)
    line = line_of(broken, '"{{contact_phone_number}}"')
    assert quoted.startswith(
        f"line {line}, column 28: {{{{contact_phone_number}}}} is inside quotes."
    )
    assert '(""79261234567"") and the body is not valid JSON' in quoted
    # Past the quotes, the next mistake is still found.
    also = broken.replace('"contact_id": {{contact_id}},', '"contact_id": {{contact_id}}')
    problems = check_template(also, mapping)
    assert problems[0] == quoted
    assert f"Expecting ',' delimiter at line {line_of(also, 'contact_full_name')}" in problems[1]


def test_quoted_number_placeholder_is_reported_though_the_json_parses(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["waiting_for_answer"].replace(
        "{{call_session_id}}", '"id-{{call_session_id}}"'
    )
    (problem,) = check_template(broken, mapping)
    assert "{{call_session_id}} is inside quotes" in problem


def test_missing_event_key_is_a_problem(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["talk_started"].replace('  "event": "talk_started",\n', "")
    problems = check_template(broken, mapping)
    assert len(problems) == 1
    assert problems[0].startswith('no "event" key: add "event": "<key>"')
    assert "talk_started" in problems[0]  # the keys to choose from


def test_unknown_event_key_suggests_the_known_one(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["talk_started"].replace('"talk_started"', '"talk_start"')
    problems = check_template(broken, mapping)
    assert problems[0].startswith(
        '"event": "talk_start" is not an event callhook knows (did you mean "talk_started"?)'
    )


def test_event_from_a_placeholder_is_a_problem(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["talk_started"].replace('"talk_started"', "{{notification_mnemonic}}")
    problems = check_template(broken, mapping)
    assert problems[0] == (
        'line 2: "event" must be a constant such as "talk_started", not '
        "{{notification_mnemonic}}: callhook keys on it (docs/platforms/uis.md)."
    )


def test_missing_call_session_id_is_a_problem(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["recording_ready"].replace('  "call_session_id": {{call_session_id}},\n', "")
    (problem,) = check_template(broken, mapping)  # the mapping's "call_id missing" too
    assert problem.startswith('"call_session_id": {{call_session_id}} is missing')


def test_a_value_the_mapping_cannot_read_is_reported_with_its_reason(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["talk_started"].replace("{{direction}}", '"incoming"')
    (problem,) = check_template(broken, mapping)
    assert problem == (
        "callhook's mapping (mappings/uis.yaml) refuses it: talk started: direction: "
        "direction 'incoming' is not one of: in, out"
    )


def test_several_problems_are_all_reported(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = (
        TEMPLATES["outbound_call"]
        .replace('  "call_session_id": {{call_session_id}},\n', "")
        .replace("{{employee_id}}", "{{employe_id}}")
        .replace("{{employee_full_name}}", '"{{employee_full_name}}"')
    )
    problems = check_template(broken, mapping)
    assert any("{{employe_id}} is not a UIS variable" in p for p in problems)
    assert any("{{employee_full_name}} is inside quotes" in p for p in problems)
    assert any("{{call_session_id}} is missing" in p for p in problems)
    assert len(problems) == 3


def test_repeated_key_is_a_problem(mapping) -> None:  # type: ignore[no-untyped-def]
    broken = TEMPLATES["lost_call"].replace(
        '"scenario_name": {{scenario_name}},', '"scenario_name": {{scenario_name}}, "event": "x",'
    )
    problems = check_template(broken, mapping)
    assert 'the key "event" appears more than once: only the last one counts' in problems


def test_get_template_is_not_checked_as_json(mapping) -> None:  # type: ignore[no-untyped-def]
    (problem,) = check_template("event=talk_started&call_session_id={{call_session_id}}", mapping)
    assert problem.startswith("not a JSON template")


def test_undocumented_variable_and_unread_field_are_notes_only(mapping) -> None:  # type: ignore[no-untyped-def]
    text = (
        TEMPLATES["waiting_for_answer"]
        .replace('  "direction": {{direction}},\n', "")
        .replace('"leg_id": {{leg_id}}', '"leg_id": {{leg_id}},\n  "file_link": {{file_link}}')
    )
    report = inspect_template(text, mapping)
    assert report.problems == []
    assert any(
        n.startswith("{{file_link}} is not among the variables documented") for n in report.notes
    )
    assert "the event will carry no direction: the template has none of direction" in report.notes


def test_placeholders_inside_strings_are_told_apart() -> None:
    found = find_placeholders('{"a": {{x}}, "b": "{{y}}", "c\\"{{z}}": 1, "d": "}}{{w}}"}')
    assert [(p.name, p.in_string) for p in found] == [
        ("x", False),
        ("y", True),
        ("z", True),
        ("w", True),
    ]


# -- the command ------------------------------------------------------------------------
@pytest.fixture
def env() -> Iterator[None]:
    environment = Environment()
    environment.set({"MAPPINGS_DIR": str(ROOT / "mappings")})
    yield
    environment.restore()


def test_command_passes_a_good_template(env: None, tmp_path: Path) -> None:
    path = tmp_path / "talk_started.json"
    path.write_text(TEMPLATES["talk_started"], encoding="utf-8")
    result = CliRunner().invoke(uis, ["check-template", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == f"ok: {EXPECTED['talk_started']}\n"


def test_command_exits_1_with_the_problems(env: None) -> None:
    broken = (
        TEMPLATES["talk_started"]
        .replace("{{direction}}", '"{{direction}}"')
        .replace('"call_source": {{call_source}},', '"call_source": {{call_source}}')
    )
    result = CliRunner().invoke(uis, ["check-template", "-"], input=broken)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("problem: ")]
    assert len(lines) == 2
    assert "{{direction}} is inside quotes" in lines[0]
    assert lines[1].startswith("problem: not valid JSON once UIS fills in the values")
    assert "Expecting ',' delimiter" in lines[1]
