"""One call's whole story: the verdict, the folded state and the timeline, from callhook's
own tables (no HubSpot request on a page load), so the page works in a dry run too.

It follows merges: a merged leg's id leads to the call it belongs to (`root_of`), and a
call's story includes its legs' deliveries and attempts, each marked with the leg.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from worker.core.db import get_engine
from worker.core.models import Call
from worker.core.redaction import Redactor, secret_values
from worker.core.settings import get_settings
from worker.reports.call_story.formatting import number_text
from worker.reports.call_story.links import RecordLinks
from worker.reports.call_story.statuses import status_of
from worker.reports.call_story.timeline import timeline
from worker.reports.call_story.verdicts import Verdict, verdict

MAX_LEGS = 50
MAX_MERGE_HOPS = 5

REDACTED = "[redacted]"


@dataclass
class Story:
    call: Call
    verdict: Verdict
    entries: list[Any]
    legs: list[Call]
    status: str
    record_url: str | None
    contact_url: str | None
    number: str
    crm_error: str
    capped: list[str] = field(default_factory=list)  # what hit its bound (say so)


def root_of(call_id: int) -> tuple[int | None, bool]:
    """The call a (possibly merged) call id belongs to, and whether that is another call."""
    with Session(get_engine()) as session:
        current = session.get(Call, call_id)
        if current is None:
            return None, False
        for _ in range(MAX_MERGE_HOPS):
            if current.merged_into is None:
                break
            parent = session.get(Call, current.merged_into)
            if parent is None:
                break
            current = parent
        return current.id, current.id != call_id


def make_redactor(extra_secrets: Iterable[str] = ()) -> Redactor:
    """The story page's redactor: every configured secret (`secret_values`) plus the
    webhook secrets the receiver passes in (the mappings' ``auth.secret_envs``), 8 chars
    or longer, and the values of credential-looking keys, shown as ``[redacted]``."""
    return Redactor([*secret_values(get_settings()), *extra_secrets], REDACTED)


def call_story(
    call_id: int, extra_secrets: Iterable[str] = (), links: RecordLinks | None = None
) -> Story | None:
    """Everything callhook knows about one (unmerged) call, in time order; None if unknown."""
    redactor = make_redactor(extra_secrets)
    links = links or RecordLinks.current()
    capped: list[str] = []
    with Session(get_engine()) as session:
        call = session.get(Call, call_id)
        if call is None:
            return None
        legs = list(
            session.exec(
                select(Call)
                .where(col(Call.merged_into) == call_id)
                .order_by(col(Call.id))
                .limit(MAX_LEGS)
            )
        )
        leg_names = {leg.id or 0: leg.platform_call_id for leg in legs}
        ids = [call_id, *leg_names]
        entries = timeline(session, call, ids, leg_names, redactor, capped)
    return Story(
        call=call,
        verdict=verdict(call, entries, redactor),
        entries=entries,
        legs=legs,
        status=status_of(call),
        record_url=links.call(call.crm_id),
        contact_url=links.contact(call.crm_contact_id),
        number=number_text(call),
        crm_error=redactor.text(call.crm_error),
        capped=capped,
    )
