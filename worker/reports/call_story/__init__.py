"""The operator's view of calls: the searchable list and one call's whole story.

Everything here reads callhook's own tables (no HubSpot request on a page load), bounded
by limits, so the console stays fast and works in a dry run. The web layer
(``webhook_receiver/web/console/calls.py``) parses nothing itself and formats little: it
hands the query parameters to `parse_filters`, and renders `list_calls` / `call_story`.

One module per question: ``statuses`` (the operator's five words), ``filters`` and
``search`` (the list's parameters and their SQL), ``call_list``, ``links`` (HubSpot
record URLs), ``entries`` and ``timeline`` (what happened to a call), ``verdicts`` (what
it means), ``story`` (all of it for one call), ``formatting`` (times, durations, numbers).
Callers import from here.
"""

from worker.reports.call_story.call_list import PAGE_SIZE, CallPage, CallRow, list_calls
from worker.reports.call_story.entries import Attempt, Delivery, Dial, DryRun, Pop
from worker.reports.call_story.filters import (
    FILTER_PARAMS,
    CallFilters,
    FilterError,
    parse_filters,
)
from worker.reports.call_story.formatting import duration_text, number_text, stamp, when
from worker.reports.call_story.links import RecordLinks
from worker.reports.call_story.statuses import STATUSES, status_of, without_contact
from worker.reports.call_story.story import Story, call_story, make_redactor, root_of
from worker.reports.call_story.verdicts import Verdict, verdict

__all__ = [
    "FILTER_PARAMS",
    "PAGE_SIZE",
    "STATUSES",
    "Attempt",
    "CallFilters",
    "CallPage",
    "CallRow",
    "Delivery",
    "Dial",
    "DryRun",
    "FilterError",
    "Pop",
    "RecordLinks",
    "Story",
    "Verdict",
    "call_story",
    "duration_text",
    "list_calls",
    "make_redactor",
    "number_text",
    "parse_filters",
    "root_of",
    "stamp",
    "status_of",
    "verdict",
    "when",
    "without_contact",
]
