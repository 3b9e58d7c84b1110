"""What a call's HubSpot records say: the call's properties, its associations, the
missed-call task.

Apart from the transport and the flush because it is pure content (templates, outcome and
status maps, the agent's note, who owns the task): the single-call path, the batch flush
and the dry run build the very same bodies here, so a batch can never log a call
differently from a call logged alone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from worker.core.agents import AgentDirectory
from worker.core.events import Direction
from worker.core.numbers import display
from worker.crm.base import CallSnapshot, Contact, PermanentCrmError
from worker.crm.hubspot_config import HTML_TEMPLATES, TEMPLATES, HubSpotMapping
from worker.crm.hubspot_transport import Transport

ASSOC_CALL_TO_CONTACT = 194
ASSOC_CALL_TO_COMPANY = 182
ASSOC_CALL_TO_DEAL = 206
ASSOC_TASK_TO_CONTACT = 204


class CallRecords:
    """The record builders of `HubSpotCrm` (a mixin: it shares the adapter's state)."""

    transport: Transport
    mapping: HubSpotMapping
    agents: AgentDirectory
    platform_names: dict[str, str]

    def owner_for_agent(self, platform: str, agent_ident: str | None) -> str | None:
        raise NotImplementedError

    def call_properties(
        self, call: CallSnapshot, contact: Contact | None, owner_id: str | None
    ) -> dict[str, Any]:
        spec = self.mapping.call
        inbound = call.direction == Direction.INBOUND
        external = call.external_number or call.external_number_raw or ""
        ours = call.company_number or call.agent or ""
        duration = call.talk_s if call.talk_s is not None else call.duration_s
        if duration is None and call.answered_at and call.ended_at:
            # Platforms that send only times (Kwebbl): the talk lasted from answer to end.
            duration = max(0, round((call.ended_at - call.answered_at).total_seconds()))
        when = call.started_at or call.answered_at
        if when is None and call.ended_at is not None:
            when = call.ended_at - timedelta(seconds=call.duration_s or 0)
        context = {
            "call": call,
            "direction": call.direction or "unknown",
            "number": call.external_number,
            "number_display": display(call.external_number, external),
            "contact_name": contact.name if contact else None,
            "agent": call.agent,
            "outcome": call.outcome,
            "duration_s": duration,
            "variables": readable_variables(call.variables or {}),
            "platform": self.platform_names.get(call.platform, call.platform),
            "platform_id": call.platform,
        }
        body = HTML_TEMPLATES.from_string(spec.body).render(context).strip()
        note = self.agent_note_html(call)
        if note:
            body = f"{body}\n{note}" if body else note
        props: dict[str, Any] = {
            "hs_timestamp": _ms(when) if when else None,
            "hs_call_title": TEMPLATES.from_string(spec.title).render(context).strip(),
            "hs_call_body": body,
            "hs_call_direction": "INBOUND" if inbound else "OUTBOUND",
            "hs_call_duration": str(duration * 1000) if duration is not None else None,
            "hs_call_from_number": external if inbound else ours,
            "hs_call_to_number": ours if inbound else external,
            "hs_call_status": self._status(call),
            "hs_call_disposition": self._disposition(call),
            "hs_call_recording_url": call.recording_url
            if (call.recording_url or "").startswith("https://")
            else None,
            "hubspot_owner_id": owner_id,
            "hs_call_external_id": call.external_id,
        }
        for name, template in spec.properties.items():
            props[name] = TEMPLATES.from_string(template).render(context).strip()
        return {k: v for k, v in props.items() if v not in (None, "")}

    def _disposition(self, call: CallSnapshot) -> str | None:
        """The call's HubSpot outcome: the agent's choice after the call (the agent page's
        wrap-up), else the one `call.disposition` gives the platform's outcome."""
        if not call.ended:
            return None
        if call.agent_outcome:
            return call.agent_outcome
        # `disposition` maps outcomes (an enum) to HubSpot's ids; its type says str keys.
        return self.mapping.call.disposition.get(call.outcome) if call.outcome else None  # type: ignore[call-overload]

    def agent_note_html(self, call: CallSnapshot) -> str:
        """The agent's note as appended to hs_call_body, which HubSpot shows as HTML: the
        text escaped (a note is the agent's words, never markup), its lines kept."""
        if not call.agent_note:
            return ""
        agent = self.agents.by_email(call.agent_wrapped_by) if call.agent_wrapped_by else None
        who = (agent.name or str(agent.email)) if agent else (call.agent_wrapped_by or "agent")
        text = escape(call.agent_note.strip()).replace("\n", Markup("<br>\n"))
        return str(Markup("<p><strong>Note from {}:</strong><br>\n{}</p>").format(who, text))

    def _status(self, call: CallSnapshot) -> str | None:
        """The outcome's status once ended; before (logging at the start), live status."""
        if not call.ended:
            return "RINGING" if call.stage == "ringing" else "IN_PROGRESS"
        # `status` maps outcomes (an enum) to HubSpot's call statuses; its type says str keys.
        return self.mapping.call.status.get(call.outcome) if call.outcome else None  # type: ignore[call-overload]

    def _associations(self, contacts: list[Contact]) -> list[dict[str, Any]]:
        """The call's associations on create: its contacts, the primary contact's company and,
        when asked, its open deal."""

        links = [link(c.id, ASSOC_CALL_TO_CONTACT) for c in contacts]
        if not contacts:
            return links
        primary = contacts[0]
        company = primary.properties.get("associatedcompanyid")
        if self.mapping.associations.company and company:
            links.append(link(str(company), ASSOC_CALL_TO_COMPANY))
        if self.mapping.associations.open_deal:
            deal = self.open_deal(primary.id)
            if deal:
                links.append(link(str(deal["id"]), ASSOC_CALL_TO_DEAL))
        return links

    def open_deal(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's most recently modified open deal ({id, properties}), if any: the
        call is associated with it, and the caller's card shows it (one search each)."""
        found = self.transport.search_deals(self._open_deal_body(contact_id))
        return found[0] if found else None

    def _open_deal_body(self, contact_id: str) -> dict[str, Any]:
        filters = [
            {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id},
            {"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"},
        ]
        return {
            "filterGroups": [{"filters": filters}],
            "properties": ["dealname", "amount"],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}],
            "limit": 1,
        }

    def _wants_task(self, call: CallSnapshot) -> bool:
        task = self.mapping.missed_call_task
        return (
            task.enabled
            and call.ended
            and call.direction == Direction.INBOUND
            and call.outcome in task.outcomes
        )

    def _task_properties(self, call: CallSnapshot, contact: Contact | None) -> dict[str, str]:
        """The task's subject, body, owner and due time; the owner is the agent who should
        have answered, else the contact's owner, else the default owner."""
        spec = self.mapping.missed_call_task
        owner = (
            self.owner_for_agent(call.platform, call.agent)
            or (contact.properties.get("hubspot_owner_id") if contact else None)
            or self.mapping.owners.default_owner_id
        )
        context = {
            "number_display": (
                display(call.external_number)
                if call.external_number
                else call.external_number_raw or ""
            ),
            "contact_name": contact.name if contact else None,
            "agent": call.agent,
            "platform": self.platform_names.get(call.platform, call.platform),
            "platform_id": call.platform,
            "call": call,
        }
        due = (call.ended_at or datetime.now(UTC)) + timedelta(minutes=spec.due_in_minutes)
        return {
            "hs_timestamp": _ms(due),
            "hs_task_subject": TEMPLATES.from_string(spec.subject).render(context).strip(),
            "hs_task_body": HTML_TEMPLATES.from_string(spec.body).render(context).strip(),
            "hs_task_priority": spec.priority,
            "hubspot_owner_id": owner or "",
        }

    def _create_task(self, call: CallSnapshot, contact: Contact | None) -> str:
        """The follow-up of a missed call, due soon, on the caller's contact."""
        return self.transport.create_task(self.task_create_body(call, contact))

    def task_create_body(self, call: CallSnapshot, contact: Contact | None) -> dict[str, Any]:
        """The missed-call task's create body, its association to the contact inline."""
        properties = {
            **self._task_properties(call, contact),
            "hs_task_type": "CALL",
            "hs_task_status": "NOT_STARTED",
        }
        body: dict[str, Any] = {
            "properties": {k: v for k, v in properties.items() if v},
            "associations": [],
        }
        if contact is not None:
            body["associations"].append(link(contact.id, ASSOC_TASK_TO_CONTACT))
        return body


def link(object_id: str, type_id: int) -> dict[str, Any]:
    """One association of a create body (HubSpot-defined type)."""
    spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
    return {"to": {"id": object_id}, "types": [spec]}


def _stale_contact(exc: PermanentCrmError) -> bool:
    """HubSpot refused an association because the contact no longer exists."""
    text = str(exc).lower()
    return exc.status in (400, 404) and "association" in text


def readable_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables as a person reads them in a call body: nested values as compact JSON
    (KAZOO's `custom_channel_vars` would otherwise print as a Python dict)."""
    return {
        name: value
        if isinstance(value, str | int | float | bool)
        else json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
        for name, value in variables.items()
    }


def _ms(value: Any) -> str:
    return str(int(value.timestamp() * 1000))
