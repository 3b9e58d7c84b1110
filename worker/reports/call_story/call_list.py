"""The calls list: one page of calls matching a search, newest first.

Bounded (`PAGE_SIZE`) and keyset-paged on the call id, so the page stays fast however many
calls there are and stable while new ones arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from worker.core.db import get_engine
from worker.core.models import Call
from worker.core.settings import get_settings
from worker.reports.call_story.filters import CallFilters
from worker.reports.call_story.links import RecordLinks
from worker.reports.call_story.search import where
from worker.reports.call_story.statuses import status_of, without_contact

PAGE_SIZE = 50


@dataclass(frozen=True)
class CallRow:
    call: Call
    status: str
    no_contact: bool
    record_url: str | None


@dataclass(frozen=True)
class CallPage:
    rows: list[CallRow]
    older: int | None  # the `before` of the next page, None on the last one


def list_calls(filters: CallFilters, links: RecordLinks | None = None) -> CallPage:
    """One page of calls, newest first (keyset on id: stable while calls keep arriving)."""
    links = links or RecordLinks.current()
    region = get_settings().default_region
    with Session(get_engine()) as session:
        calls = list(
            session.exec(
                select(Call)
                .where(*where(filters, region))
                .order_by(col(Call.id).desc())
                .limit(PAGE_SIZE + 1)
            )
        )
    more = len(calls) > PAGE_SIZE
    calls = calls[:PAGE_SIZE]
    rows = [CallRow(c, status_of(c), without_contact(c), links.call(c.crm_id)) for c in calls]
    return CallPage(rows, calls[-1].id if more and calls else None)
