"""The format of ``mappings/hubspot.yaml``: how a finished call becomes HubSpot properties.

Titles, bodies and custom properties are Jinja templates rendered in a sandbox:
the file is user-edited, so a template may read the call but never reach Python.
"""

from __future__ import annotations

from typing import Literal

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.events import Outcome

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

TEMPLATES = SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)


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
        ]
    )


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
    # Extra HubSpot property → template, e.g. a custom property fed by a platform variable.
    properties: dict[str, str] = Field(default_factory=dict)

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


class HubSpotMapping(BaseModel):
    """The whole ``mappings/hubspot.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["crm"]
    crm: Literal["hubspot"]
    contact_lookup: ContactLookup = Field(default_factory=ContactLookup)
    call: CallProperties = Field(default_factory=CallProperties)
