"""Replay: the Problems page's buttons that run unmapped deliveries through the mapping again.

One delivery, or a whole group (platform + reason), as ``callhook events replay`` does
(`webhook_receiver.deliveries.replay.replay_event`). Replay reads the mapping files from
MAPPINGS_DIR again on every replay, so a fixed file is used at once; the receiver loaded
them at start-up, so new deliveries need the web processes restarted. The page says both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from sqlmodel import Session, col, select

from webhook_receiver.deliveries.replay import replay_event
from webhook_receiver.web.console.answers import BULK_SECONDS, MAX_BULK, answer
from webhook_receiver.web.console.unmapped import PROBLEM_STATUSES, reason_filter
from webhook_receiver.web.operator_auth import operator_required
from worker.core.db import get_engine
from worker.core.models import WebhookEvent
from worker.core.settings import ConfigError

bp = Blueprint("console_replay", __name__, url_prefix="/admin")


@bp.post("/events/<int:event_id>/replay", endpoint="replay_event")
@operator_required
def replay_event_view(event_id: int) -> ResponseReturnValue:
    try:
        message = replay_event(event_id)
    except ConfigError as exc:
        return answer(
            f"the mapping files do not load: {exc}",
            status=409,
            error="bad_mappings",
            anchor="#unmapped",
        )
    except LookupError as exc:
        text = str(exc).strip("'\"")
        missing = text.startswith("no event ")
        return answer(
            text,
            status=404 if missing else 409,
            error="not_found" if missing else "not_replayable",
            anchor="#unmapped",
        )
    if "still cannot be mapped" in message:  # the file is not fixed yet: say it as an error
        return answer(message, status=409, error="still_unmapped", anchor="#unmapped")
    return answer(message, anchor="#unmapped")


@dataclass
class _Tally:
    queued: int = 0
    still: int = 0
    ignored: int = 0
    skipped: int = 0
    first_problem: str | None = None

    def add(self, message: str) -> None:
        if "still cannot be mapped" in message:
            self.still += 1
            self.first_problem = self.first_problem or message
        elif " is ignored: " in message:
            self.ignored += 1
        else:
            self.queued += 1

    def sentence(self, platform: str, left: int) -> str:
        parts = [f"{self.queued} mapped and queued"]
        if self.ignored:
            parts.append(f"{self.ignored} now ignored by the mapping")
        if self.still:
            parts.append(f"{self.still} still cannot be mapped")
        if self.skipped:
            parts.append(f"{self.skipped} no longer replayable")
        text = f"{platform}: replayed {self.queued + self.ignored + self.still}: " + ", ".join(
            parts
        )
        if self.first_problem:
            text += f" (first: {self.first_problem})"
        if left:
            text += f"; {left} left: press Replay all again"
        return text


@bp.post("/problems/replay")
@operator_required
def replay_group() -> ResponseReturnValue:
    """Replay one group (platform + reason), oldest first, bounded in count and time.

    The group shares one reason, so when its first delivery still cannot be mapped the
    rest are not tried: the file is not fixed yet, and each try costs a mapping load.
    """
    platform = request.form.get("platform", "")
    reason = request.form.get("reason")
    reason = None if request.form.get("no_reason") else reason
    with Session(get_engine()) as session:
        ids = [
            int(i or 0)
            for i in session.exec(
                select(WebhookEvent.id)
                .where(
                    WebhookEvent.platform == platform,
                    reason_filter(reason),
                    col(WebhookEvent.status).in_(PROBLEM_STATUSES),
                )
                .order_by(col(WebhookEvent.id))
                .limit(MAX_BULK)
            ).all()
        ]
    if not ids:
        return answer(
            f"nothing to replay for {platform or '(no platform)'} with that reason",
            status=404,
            error="not_found",
            anchor="#unmapped",
        )
    tally, started = _Tally(), time.monotonic()
    tried = 0
    for event_id in ids:
        if time.monotonic() - started > BULK_SECONDS:
            break
        tried += 1
        try:
            tally.add(replay_event(event_id))
        except ConfigError as exc:
            return answer(
                f"the mapping files do not load: {exc}",
                status=409,
                error="bad_mappings",
                anchor="#unmapped",
            )
        except LookupError:
            tally.skipped += 1
        if tried == 1 and tally.still:
            return answer(
                f"{platform}: the first delivery of this group still cannot be mapped, so the "
                f"other {len(ids) - 1} were not tried. {tally.first_problem}",
                status=409,
                error="still_unmapped",
                anchor="#unmapped",
            )
    return answer(tally.sentence(platform, len(ids) - tried), anchor="#unmapped")
