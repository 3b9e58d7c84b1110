"""The calls list's search as SQL: one clause per filter, on indexed columns where it can.

Kept apart from the parameters' validation (`filters.py`): this is where a number typed
in any form meets the stored E.164, and where "not logged" becomes its columns.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from worker.core.models import Call, CrmStatus
from worker.core.numbers import valid_e164
from worker.reports.call_story.filters import CallFilters


def _number_clause(typed: str, region: str) -> Any:
    """A whole number: the calls with it (the index on ``external_number``). A part of one
    ("5678", "06 12"): the calls whose stored number or number as received contains those
    digits (a scan, bounded by the page's limit like every list query)."""
    e164 = valid_e164(typed, region)  # calls store that form, indexed
    if e164 is not None:
        return Call.external_number == e164
    digits = re.sub(r"\D", "", typed)
    return sa.or_(
        col(Call.external_number).contains(digits, autoescape=True),
        col(Call.external_number_raw).contains(digits, autoescape=True),
    )


def _status_clause(status: str) -> Any:
    if status == "logged":
        return Call.crm_status == CrmStatus.SYNCED
    if status == "pending":
        return col(Call.crm_status).in_([CrmStatus.WAITING, CrmStatus.PENDING])
    if status == "not_logged":
        return sa.and_(
            col(Call.crm_status).in_([CrmStatus.SYNCED, CrmStatus.DRY_RUN]),
            col(Call.crm_contact_id).is_(None),
        )
    return Call.crm_status == status  # failed, dry_run: the same word


def _time_clause(since: date | None, until: date | None) -> list[Any]:
    """Calls by when they started (indexed), or ended for those whose start never came."""
    clauses = []
    if since is not None:
        start = datetime.combine(since, datetime.min.time(), tzinfo=UTC)
        clauses.append(
            sa.or_(
                col(Call.started_at) >= start,
                sa.and_(col(Call.started_at).is_(None), col(Call.ended_at) >= start),
            )
        )
    if until is not None:
        end = datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        clauses.append(
            sa.or_(
                col(Call.started_at) < end,
                sa.and_(col(Call.started_at).is_(None), col(Call.ended_at) < end),
            )
        )
    return clauses


def where(filters: CallFilters, region: str) -> list[Any]:
    """The WHERE clauses of a search (merged legs are listed under their call)."""
    clauses: list[Any] = [col(Call.merged_into).is_(None)]
    if filters.platform:
        clauses.append(Call.platform == filters.platform)
    if filters.direction:
        clauses.append(Call.direction == filters.direction)
    if filters.agent:
        clauses.append(sa.func.lower(Call.agent).contains(filters.agent.lower(), autoescape=True))
    if filters.number:
        clauses.append(_number_clause(filters.number, region))
    if filters.status:
        clauses.append(_status_clause(filters.status))
    if filters.before is not None:
        clauses.append(col(Call.id) < filters.before)
    return clauses + _time_clause(filters.since, filters.until)
