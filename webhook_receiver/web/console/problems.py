"""Console pages: problems (failed syncs, unmapped and failed deliveries) and the mapping sandbox.

What an operator fixes here, and how:
- a call whose CRM sync failed: read the reason, fix its cause (a HubSpot property, a
  token), press Retry (`worker.tasks.call_retry.retry_call`, the same as `callhook calls replay`);
- deliveries the mapping could not read, grouped by platform and reason: fix the mapping
  file, try a delivery in the sandbox, then Replay
  (`webhook_receiver.deliveries.replay.replay_event`,
  the same as `callhook events replay`), one delivery or the whole group.

Replay reads the mapping files from MAPPINGS_DIR again on every replay, so a fixed file
is used at once; the receiver loaded them at start-up, so new deliveries need the web
processes restarted. The page says both.

Bodies are shown redacted (`redacted_body`): values under secret-looking keys and every
configured secret's value (webhook secrets, tokens, SECRET_KEY…) become ``[hidden]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlmodel import Session, col, select
from werkzeug.wrappers import Response as WerkzeugResponse

from webhook_receiver.deliveries.auth import configured_secrets
from webhook_receiver.deliveries.replay import replay_event
from webhook_receiver.deliveries.sandbox import FORMAT_LABELS, FORMATS, TryResult, try_payload
from webhook_receiver.mapping import load_mappings
from webhook_receiver.mapping.payloads import body_format
from webhook_receiver.web.operator_auth import operator_required
from worker.core.db import get_engine
from worker.core.mapping_files import MappingFiles
from worker.core.models import Call, CrmStatus, EventStatus, WebhookEvent
from worker.core.redaction import Redactor, secret_values
from worker.core.settings import ConfigError, get_settings
from worker.tasks.call_retry import CallNotRetryable, retry_call

bp = Blueprint("console_problems", __name__, url_prefix="/admin")

PROBLEM_STATUSES = (EventStatus.UNMAPPED, EventStatus.FAILED)
MAX_FAILED_CALLS = 100
MAX_GROUPS = 50
DELIVERIES_PER_GROUP = 20
PREVIEW_CHARS = 400
# How much of a body is read for its preview: ten times the preview, so that a secret is
# never cut in two inside what is shown (a body this long is masked as text, not parsed).
READ_CHARS = 4000
# "Replay all" and "Retry all" stop at whichever comes first: a page must answer well
# within gunicorn's 25 s timeout, and the operator presses again for the rest.
MAX_BULK = 500
BULK_SECONDS = 10.0
HIDDEN = "[hidden]"


# -- redaction --------------------------------------------------------------------------------


def known_secrets(files: MappingFiles) -> list[str]:
    """Every secret value this process can see, longest first (a secret inside another)."""
    envs = [env for m in files.platforms.values() for env in m.auth.secret_envs]
    values = set(secret_values(get_settings(), envs))
    for mapping in files.platforms.values():
        values.update(configured_secrets(mapping.auth))  # whatever their length
    return sorted((v for v in values if v), key=len, reverse=True)


def redacted_body(text: str, secrets: list[str]) -> str:
    """`text` fit to show an operator: secret-looking keys' values and secrets hidden.

    A body shaped like a form (``a=b&c=d``, no spaces) stays a compact form: the preview
    is one line in a table, not the story page's one field a line.
    """
    redactor = Redactor(secrets, HIDDEN, min_chars=1)  # exactly what `known_secrets` found
    stripped = text.strip()
    if (
        stripped[:1] not in ("{", "[")
        and "=" in stripped
        and not any(c.isspace() for c in stripped)
    ):
        pairs = redactor.pairs(stripped)
        if pairs:
            return urlencode(pairs, safe="[]@:/")
    return redactor.body(text)


def _preview(text: str, secrets: list[str]) -> str:
    shown = redacted_body(text, secrets)
    return shown if len(shown) <= PREVIEW_CHARS else shown[: PREVIEW_CHARS - 1] + "…"


# -- what the page lists ----------------------------------------------------------------------


@dataclass
class Delivery:
    id: int
    received_at: datetime
    status: str
    method: str
    content_type: str
    preview: str


@dataclass
class Group:
    platform: str
    reason: str | None
    count: int
    failed: int
    first_seen: datetime
    last_seen: datetime
    deliveries: list[Delivery] = field(default_factory=list)


def _reason_filter(reason: str | None) -> Any:
    return WebhookEvent.error.is_(None) if reason is None else WebhookEvent.error == reason  # type: ignore[union-attr]


def _groups(session: Session, secrets: list[str]) -> list[Group]:
    failed = sa.func.sum(sa.case((col(WebhookEvent.status) == EventStatus.FAILED, 1), else_=0))
    last = sa.func.max(WebhookEvent.received_at)
    rows = session.exec(
        select(  # type: ignore[call-overload]
            WebhookEvent.platform,
            WebhookEvent.error,
            sa.func.count(),
            failed,
            sa.func.min(WebhookEvent.received_at),
            last,
        )
        .where(WebhookEvent.status.in_(PROBLEM_STATUSES))  # type: ignore[attr-defined]
        .group_by(WebhookEvent.platform, WebhookEvent.error)
        .order_by(last.desc())
        .limit(MAX_GROUPS)
    ).all()
    groups = []
    for platform, reason, count, n_failed, first, latest in rows:
        group = Group(
            platform, reason, int(count), int(n_failed or 0), _aware(first), _aware(latest)
        )
        group.deliveries = _deliveries(session, platform, reason, secrets)
        groups.append(group)
    return groups


def _deliveries(
    session: Session, platform: str, reason: str | None, secrets: list[str]
) -> list[Delivery]:
    """The group's latest deliveries, each body read only as far as its preview needs
    (bodies run to MAX_BODY_BYTES, and a page lists up to a thousand of them)."""
    rows = session.exec(
        select(  # type: ignore[call-overload]
            WebhookEvent.id,
            WebhookEvent.received_at,
            WebhookEvent.status,
            WebhookEvent.method,
            WebhookEvent.content_type,
            sa.func.substr(WebhookEvent.body, 1, READ_CHARS),
            sa.func.substr(WebhookEvent.query, 1, READ_CHARS),
        )
        .where(
            WebhookEvent.platform == platform,
            _reason_filter(reason),
            WebhookEvent.status.in_(PROBLEM_STATUSES),  # type: ignore[attr-defined]
        )
        .order_by(WebhookEvent.id.desc())  # type: ignore[union-attr]
        .limit(DELIVERIES_PER_GROUP)
    ).all()
    return [
        Delivery(
            event_id, _aware(received), status, method, content_type,
            _preview(query if method == "GET" else body, secrets),
        )
        for event_id, received, status, method, content_type, body, query in rows
    ]  # fmt: skip


def _aware(value: Any) -> datetime:
    """Aggregates and bare columns skip the column's type on SQLite: times come back naive
    (or as text); they are UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _failed_calls(session: Session) -> tuple[list[Call], int]:
    where = (Call.crm_status == CrmStatus.FAILED, Call.merged_into.is_(None))  # type: ignore[union-attr]
    total = session.exec(select(sa.func.count()).select_from(Call).where(*where)).one()
    rows = session.exec(
        select(Call).where(*where).order_by(Call.id.desc()).limit(MAX_FAILED_CALLS)  # type: ignore[union-attr]
    ).all()
    return list(rows), int(total or 0)


def _loaded_files() -> MappingFiles:
    return current_app.extensions["callhook.mappings"]


@bp.get("/problems")
@operator_required
def problems():  # type: ignore[no-untyped-def]
    secrets = known_secrets(_loaded_files())
    with Session(get_engine()) as session:
        calls, calls_total = _failed_calls(session)
        groups = _groups(session, secrets)
    return render_template(
        "console/problems.html",
        calls=calls,
        calls_total=calls_total,
        groups=groups,
        limits={
            "calls": MAX_FAILED_CALLS,
            "groups": MAX_GROUPS,
            "per_group": DELIVERIES_PER_GROUP,
            "bulk": MAX_BULK,
        },
        mappings_dir=str(get_settings().mappings_dir),
    )


# -- actions ----------------------------------------------------------------------------------


def _wants_html() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "text/html"


def _back(anchor: str = "") -> WerkzeugResponse:
    return redirect(url_for("console_problems.problems") + anchor, code=303)


def _answer(message: str, *, status: int = 200, error: str | None = None, anchor: str = "") -> Any:
    """A browser gets the message flashed on the problems page; a script gets JSON."""
    if _wants_html():
        flash(message, "error" if error else "info")
        return _back(anchor)
    if error:
        return jsonify(error=error, reason=message), status
    return jsonify(status="ok", message=message), status


@bp.post("/calls/<int:call_id>/retry", endpoint="retry_call")
@operator_required
def retry_call_view(call_id: int):  # type: ignore[no-untyped-def]
    try:
        message = retry_call(call_id)
    except LookupError as exc:
        return _answer(str(exc).strip("'\""), status=404, error="not_found", anchor="#failed-syncs")
    except CallNotRetryable as exc:
        return _answer(str(exc), status=409, error="not_retryable", anchor="#failed-syncs")
    return _answer(message, anchor="#failed-syncs")


@bp.post("/problems/retry-all")
@operator_required
def retry_all_failed():  # type: ignore[no-untyped-def]
    with Session(get_engine()) as session:
        ids = session.exec(
            select(Call.id)
            .where(Call.crm_status == CrmStatus.FAILED, Call.merged_into.is_(None))  # type: ignore[union-attr]
            .order_by(Call.id)
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
    return _answer(message, anchor="#failed-syncs")


@bp.post("/events/<int:event_id>/replay", endpoint="replay_event")
@operator_required
def replay_event_view(event_id: int):  # type: ignore[no-untyped-def]
    try:
        message = replay_event(event_id)
    except ConfigError as exc:
        return _answer(
            f"the mapping files do not load: {exc}",
            status=409,
            error="bad_mappings",
            anchor="#unmapped",
        )
    except LookupError as exc:
        text = str(exc).strip("'\"")
        missing = text.startswith("no event ")
        return _answer(
            text,
            status=404 if missing else 409,
            error="not_found" if missing else "not_replayable",
            anchor="#unmapped",
        )
    if "still cannot be mapped" in message:  # the file is not fixed yet: say it as an error
        return _answer(message, status=409, error="still_unmapped", anchor="#unmapped")
    return _answer(message, anchor="#unmapped")


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
def replay_group():  # type: ignore[no-untyped-def]
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
                    _reason_filter(reason),
                    WebhookEvent.status.in_(PROBLEM_STATUSES),  # type: ignore[attr-defined]
                )
                .order_by(WebhookEvent.id)  # type: ignore[arg-type]
                .limit(MAX_BULK)
            ).all()
        ]
    if not ids:
        return _answer(
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
            return _answer(
                f"the mapping files do not load: {exc}",
                status=409,
                error="bad_mappings",
                anchor="#unmapped",
            )
        except LookupError:
            tally.skipped += 1
        if tried == 1 and tally.still:
            return _answer(
                f"{platform}: the first delivery of this group still cannot be mapped, so the "
                f"other {len(ids) - 1} were not tried. {tally.first_problem}",
                status=409,
                error="still_unmapped",
                anchor="#unmapped",
            )
    return _answer(tally.sentence(platform, len(ids) - tried), anchor="#unmapped")


# -- the mapping sandbox ----------------------------------------------------------------------


def _fresh_files() -> tuple[MappingFiles, str | None]:
    """The mapping files as they are on disk now (what a replay would use), else the loaded
    ones with the reason the disk's do not load."""
    try:
        return load_mappings(get_settings().mappings_dir), None
    except ConfigError as exc:
        return (
            _loaded_files(),
            f"the mapping files on disk do not load, showing the loaded ones: {exc}",
        )


def _from_event(event_id: str, secrets: list[str]) -> dict[str, Any]:
    """The form prefilled with a stored delivery: its platform, format and redacted body."""
    try:
        number = int(event_id)
    except ValueError:
        return {"notice": f"{event_id[:20]!r} is not an event id"}
    with Session(get_engine()) as session:
        event = session.get(WebhookEvent, number)
    if event is None:
        return {"notice": f"no event {number}"}
    if event.method == "GET":
        fmt, raw = "query", event.query
    else:
        fmt, raw = body_format(event.content_type) or "json", event.body
    payload = redacted_body(raw, secrets)
    notice = f"Delivery {number} ({event.platform}, {event.method} {event.content_type or '-'})"
    if HIDDEN in payload and HIDDEN not in raw:
        notice += f"; secret-looking values are shown as {HIDDEN}"
    return {"platform": event.platform, "fmt": fmt, "payload": payload, "notice": notice}


@bp.route("/sandbox", methods=["GET", "POST"])
@operator_required
def sandbox():  # type: ignore[no-untyped-def]
    settings = get_settings()
    files, files_problem = _fresh_files()
    form: dict[str, Any] = {"platform": "", "fmt": "json", "payload": "", "notice": None}
    result: TryResult | None = None
    error: str | None = None
    source = request.form if request.method == "POST" else request.args
    if request.method == "GET" and request.args.get("event"):
        form.update(_from_event(request.args["event"], known_secrets(files)))
    elif request.method == "POST":
        form.update(
            platform=source.get("platform", ""),
            fmt=source.get("fmt", "json"),
            payload=source.get("payload", ""),
        )
    if form["payload"] or request.method == "POST":
        raw = str(form["payload"]).encode()
        if len(raw) > settings.max_body_bytes:
            error = f"the payload is over {settings.max_body_bytes} bytes (MAX_BODY_BYTES)"
        elif form["fmt"] not in FORMATS:
            error = f"choose a format among {', '.join(FORMAT_LABELS.values())}"
        elif not raw.strip():
            error = "paste a payload to try"
        else:
            result = try_payload(
                files, str(form["platform"]), raw, str(form["fmt"]), settings.default_region
            )
    return render_template(
        "console/sandbox.html",
        platforms=sorted(files.platforms),
        formats=FORMAT_LABELS,
        form=form,
        result=result,
        error=error,
        files_problem=files_problem,
        max_bytes=settings.max_body_bytes,
    )
