"""Failed CRM syncs: the Problems page's first list, and its Retry buttons.

A call whose sync failed for good (a permanent HubSpot error, or retries exhausted) waits
here with HubSpot's reason until the operator fixes the cause (a property, an owner, the
token) and presses Retry: `worker.tasks.call_retry.retry_call`, the same as ``callhook
calls replay``. A retry of a call HubSpot already holds updates that record.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from flask import Blueprint
from flask.typing import ResponseReturnValue
from sqlmodel import Session, col, select

from webhook_receiver.web.console.answers import BULK_SECONDS, MAX_BULK, answer
from webhook_receiver.web.operator_auth import operator_required
from worker.core.db import get_engine
from worker.core.models import Call, CrmStatus
from worker.tasks.call_retry import CallNotRetryable, retry_call

bp = Blueprint("console_failed_syncs", __name__, url_prefix="/admin")

MAX_FAILED_CALLS = 100


def failed_calls(session: Session) -> tuple[list[Call], int]:
    """The latest failed calls (merged legs aside), and how many there are in all."""
    where = (col(Call.crm_status) == CrmStatus.FAILED, col(Call.merged_into).is_(None))
    total = session.exec(select(sa.func.count()).select_from(Call).where(*where)).one()
    rows = session.exec(
        select(Call).where(*where).order_by(col(Call.id).desc()).limit(MAX_FAILED_CALLS)
    ).all()
    return list(rows), int(total or 0)


@bp.post("/calls/<int:call_id>/retry", endpoint="retry_call")
@operator_required
def retry_call_view(call_id: int) -> ResponseReturnValue:
    try:
        message = retry_call(call_id)
    except LookupError as exc:
        return answer(str(exc).strip("'\""), status=404, error="not_found", anchor="#failed-syncs")
    except CallNotRetryable as exc:
        return answer(str(exc), status=409, error="not_retryable", anchor="#failed-syncs")
    return answer(message, anchor="#failed-syncs")


@bp.post("/problems/retry-all")
@operator_required
def retry_all_failed() -> ResponseReturnValue:
    with Session(get_engine()) as session:
        ids = session.exec(
            select(Call.id)
            .where(Call.crm_status == CrmStatus.FAILED, col(Call.merged_into).is_(None))
            .order_by(col(Call.id))
            .limit(MAX_BULK)
        ).all()
    done, skipped, started = 0, 0, time.monotonic()
    for call_id in ids:
        if time.monotonic() - started > BULK_SECONDS:
            break
        try:
            retry_call(int(call_id or 0))
            done += 1
        except (LookupError, CallNotRetryable):
            skipped += 1
    rest = len(ids) - done - skipped
    message = (
        f"{done} failed call(s) queued for a CRM sync"
        + (f"; {skipped} could not be retried" if skipped else "")
        + (f"; {rest} left: press Retry all again" if rest else "")
    )
    return answer(message, anchor="#failed-syncs")
