"""Payload text reaches HubSpot as text: HubSpot renders call and task bodies as HTML.

A platform variable or a caller-controlled value (a CNAME, a custom field) such as
`<img src=x onerror=…>` must show in HubSpot as those characters, never run there.
"""

from __future__ import annotations

from tests.conftest import ROOT
from tests.fake_hubspot import FakeHubSpot
from tests.test_hubspot_adapter import snapshot
from tests.test_hubspot_policies import configured, fake  # noqa: F401 (fixture)

HOSTILE = '<img src=x onerror="alert(1)">'


def test_variables_are_escaped_in_the_call_body(fake: FakeHubSpot) -> None:  # noqa: F811
    configured(fake).log_call(snapshot("esc-1", "+33612345640", variables={"caller_name": HOSTILE}))
    (call,) = fake.calls()
    body = call["properties"]["hs_call_body"]
    assert HOSTILE not in body
    assert "caller_name: &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in body
    # The title is plain text in HubSpot: left as the platform sent it.
    assert call["properties"]["hs_call_title"].startswith("Inbound call from")


def test_agent_is_escaped_in_the_missed_call_task(fake: FakeHubSpot) -> None:  # noqa: F811
    crm = configured(fake, missed_call_task__enabled=True)
    crm.log_call(snapshot("esc-2", "+33612345641", outcome="no_answer", agent=HOSTILE))
    (task,) = fake.tasks()
    assert HOSTILE not in task["properties"]["hs_task_body"]
    assert "&lt;img" in task["properties"]["hs_task_body"]


def test_body_names_the_platform_as_its_file_does_and_nested_variables_read_as_json(
    fake: FakeHubSpot,  # noqa: F811
) -> None:
    from worker.crm.mapping_files import load_mapping_files

    crm = configured(fake)
    crm.platform_names = load_mapping_files(ROOT / "mappings").platform_names
    crm.log_call(
        snapshot(
            "names-1",
            "+33612345642",
            platform="kazoo",
            variables={"custom_channel_vars": {"Bridge-ID": "b-1", "Owner-ID": "o-2"}},
        )
    )
    body = fake.calls()[0]["properties"]["hs_call_body"]
    assert "call via KAZOO (2600Hz)" in body
    assert "custom_channel_vars: {&#34;Bridge-ID&#34;: &#34;b-1&#34;, &#34;Owner-ID&#34;" in body
    assert "{'Bridge-ID'" not in body
