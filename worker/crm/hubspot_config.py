"""The format of ``mappings/hubspot.yaml``: how a finished call becomes HubSpot properties.

Titles, bodies and custom properties are Jinja templates rendered in a sandbox:
the file is user-edited, so a template may read the call but never reach Python.
"""

from __future__ import annotations

import re
from typing import Literal

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.core.events import Outcome

# HubSpot's enumeration for hs_call_status.
CALL_STATUSES = {
    "BUSY",
    "CALLING_CRM_USER",
    "CANCELED",
    "COMPLETED",
    "CONNECTING",
    "FAILED",
    "IN_PROGRESS",
    "NO_ANSWER",
    "QUEUED",
    "RINGING",
}

# HubSpot's default call outcomes (hs_call_disposition), as HubSpot names them: every portal
# has them (https://developers.hubspot.com/docs/api/crm/calls, "hs_call_disposition").
HUBSPOT_OUTCOME_NAMES = {
    "f240bbac-87c9-4f6e-bf70-924b57d47db7": "Connected",
    "9d9162e7-6cf3-4944-bf63-4dff82258764": "Busy",
    "73a0d17f-1163-4015-bdd5-ec830791da20": "No answer",
    "b2cf5968-551e-4856-9783-52b3da59a7d0": "Left voicemail",
    "a4c4c377-d246-4b32-a13b-75a56a4cd0ff": "Left live message",
    "17b47fee-58de-441e-a44c-c6300d46f273": "Wrong number",
}
OUTCOME_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_OUTCOME_LABEL = 60

TEMPLATES = SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)
# For the properties HubSpot renders as HTML (hs_call_body, hs_task_body): every value a
# template puts in — payload variables, numbers, names — is escaped, so a caller's name
# or a platform variable like `<img src=x onerror=…>` shows as text in HubSpot instead
# of running there. The template's own text is not escaped: it is the operator's.
HTML_TEMPLATES = SandboxedEnvironment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _check_template(text: str) -> str:
    try:
        TEMPLATES.from_string(text)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template error line {exc.lineno}: {exc.message}") from None
    return text


class ContactLookup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Searched with the national significant number (HubSpot strips the country code).
    national_properties: list[str] = Field(
        default_factory=lambda: [
            "hs_searchable_calculated_phone_number",
            "hs_searchable_calculated_mobile_number",
        ]
    )
    # Searched with the E.164 string, for contacts whose number was stored that way.
    e164_properties: list[str] = Field(default_factory=lambda: ["phone", "mobilephone"])
    properties: list[str] = Field(
        default_factory=lambda: [
            "firstname",
            "lastname",
            "email",
            "company",
            "phone",
            "mobilephone",
            "hubspot_owner_id",
            "lastmodifieddate",
            "associatedcompanyid",
        ]
    )
    # The company's own numbers (DIDs, switchboard): never looked up as a customer.
    company_numbers: list[str] = Field(default_factory=list)
    # Several contacts share the number: the most recently modified one, or all of them.
    several_matches: Literal["most_recent", "all"] = "most_recent"
    # A caller no contact has: log the call without one, or create a placeholder contact
    # ("Caller +33 6 12 34 56 78") — never two for one number.
    unknown_caller: Literal["no_contact", "create_contact"] = "no_contact"

    @field_validator("company_numbers")
    @classmethod
    def _numbers(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip().startswith("+"):
                raise ValueError(f"{value!r}: write company numbers in E.164 (+33…)")
        return values


class CallProperties(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = "{{ direction|capitalize }} call {{ 'from' if direction == 'inbound' else 'to' }} {{ contact_name or number_display }}"  # noqa: E501
    body: str = ""
    status: dict[Outcome, str] = Field(
        default_factory=lambda: {
            Outcome.ANSWERED: "COMPLETED",
            Outcome.BUSY: "BUSY",
            Outcome.NO_ANSWER: "NO_ANSWER",
            Outcome.FAILED: "FAILED",
            Outcome.CANCELED: "CANCELED",
            Outcome.VOICEMAIL: "COMPLETED",
        }
    )
    # Outcome → HubSpot call outcome GUID (hs_call_disposition); custom outcomes by GUID.
    disposition: dict[Outcome, str] = Field(default_factory=dict)
    # What an agent may pick after the call (the agent page's wrap-up), in this order:
    # HubSpot call outcome id → the name agents read. The choice replaces the outcome from
    # `disposition` on the call record. Unset: the outcomes of `disposition`, named as
    # HubSpot names its default ones.
    agent_outcomes: dict[str, str] = Field(default_factory=dict)
    # Extra HubSpot property → template, e.g. a custom property fed by a platform variable.
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("agent_outcomes")
    @classmethod
    def _agent_outcomes(cls, value: dict[str, str]) -> dict[str, str]:
        for outcome_id, label in value.items():
            if not OUTCOME_ID.match(str(outcome_id)):
                raise ValueError(
                    f"{outcome_id!r}: write a HubSpot call outcome id (its GUID, e.g. "
                    "f240bbac-87c9-4f6e-bf70-924b57d47db7 for Connected)"
                )
            if not str(label or "").strip() or len(str(label)) > MAX_OUTCOME_LABEL:
                raise ValueError(
                    f"{outcome_id}: give it a name agents read, at most {MAX_OUTCOME_LABEL} "
                    "characters (e.g. Connected)"
                )
        return value

    def outcome_choices(self) -> dict[str, str]:
        """The outcomes an agent may choose, id → name, in the order they are shown."""
        if self.agent_outcomes:
            return {str(k): str(v).strip() for k, v in self.agent_outcomes.items()}
        choices: dict[str, str] = {}
        for outcome, outcome_id in self.disposition.items():
            name = HUBSPOT_OUTCOME_NAMES.get(outcome_id)
            choices.setdefault(outcome_id, name or outcome.value.replace("_", " ").capitalize())
        return choices

    @field_validator("title", "body")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_template(value)

    @field_validator("properties")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            _check_template(text)
        return value

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: dict[Outcome, str]) -> dict[Outcome, str]:
        for outcome, status in value.items():
            if status not in CALL_STATUSES:
                raise ValueError(
                    f"{outcome.value}: {status!r} is not a HubSpot call status "
                    f"({', '.join(sorted(CALL_STATUSES))})"
                )
        return value


class Associations(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The contact's primary company (association 182); free: read from the contact.
    company: bool = True
    # The contact's most recently modified open deal (association 206): one more search.
    open_deal: bool = False


class Owners(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # When neither the agent nor the contact has an owner (a HubSpot owner id).
    default_owner_id: str | None = None


class MissedCallTask(BaseModel):
    """A follow-up task for a missed inbound call: type CALL, due soon."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    due_in_minutes: int = Field(default=30, ge=0)
    subject: str = "Call back {{ contact_name or number_display }}"
    body: str = (
        "Missed call from {{ number_display }}{% if agent %}, extension {{ agent }}{% endif %}."
    )
    priority: Literal["LOW", "MEDIUM", "HIGH", "NONE"] = "HIGH"
    # Which missed calls get one (an abandoned call too: the customer gave up ringing).
    outcomes: list[Outcome] = Field(
        default_factory=lambda: [Outcome.NO_ANSWER, Outcome.BUSY, Outcome.CANCELED]
    )

    @field_validator("subject", "body")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_template(value)


class HubSpotMapping(BaseModel):
    """The whole ``mappings/hubspot.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["crm"]
    crm: Literal["hubspot"]
    contact_lookup: ContactLookup = Field(default_factory=ContactLookup)
    call: CallProperties = Field(default_factory=CallProperties)
    associations: Associations = Field(default_factory=Associations)
    owners: Owners = Field(default_factory=Owners)
    missed_call_task: MissedCallTask = Field(default_factory=MissedCallTask)
    # When the call record is created: at the end (default), or as soon as the call is
    # known, with status RINGING / IN_PROGRESS, updated in place until it ends.
    log_at: Literal["end", "start"] = "end"
    # A call whose end never arrives (a lost webhook) is closed and logged after this long.
    close_unended_after_minutes: int = Field(default=120, ge=1)
