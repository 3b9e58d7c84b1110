"""Finding agents: platform users matched to HubSpot owners, proposed as agents.yaml entries.

An admin setting callhook up knows the people but not their ids on each platform; the
platforms know the ids (``worker.telephony.directory``) and HubSpot knows the owners. This
module puts them side by side: a platform user is matched to the HubSpot owner with the same
email, else to the one owner with the same name (accents, case and word order ignored).
Users already in agents.yaml are shown as such; the others, grouped by owner, become new
agents, given as a unified diff against the current agents.yaml for the operator to copy.
Nothing is written: agents.yaml is the admin's file, and a restart applies it.

HubSpot's owners come from the owners API (``GET /crm/v3/owners``, paged with ``after``)
through the same hubspot-api-client as the CRM adapter, read once and kept for
``OWNERS_CACHE_S``: the console's agents page resolves every agent from that one list
rather than asking HubSpot once per agent.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import threading
import time
import unicodedata
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from worker.core.agents import AgentDirectory
from worker.core.settings import Settings
from worker.telephony.base import Timeouts
from worker.telephony.directory import (
    DIRECTORY_TIMEOUTS,
    PlatformListing,
    list_platform_users,
)
from worker.telephony.users import PlatformUser

OWNERS_CACHE_S = 300.0
# A failed listing is remembered briefly too: a page reloaded in a loop must not hammer HubSpot.
OWNERS_FAILURE_CACHE_S = 30.0
OWNERS_PAGE_SIZE = 100  # the owners API takes up to 500; 100 keeps each answer small
MAX_OWNER_PAGES = 20
OWNERS_DEADLINE_S = 20.0
DRY_RUN = "dry run: no HUBSPOT_ACCESS_TOKEN is set, so HubSpot's owners are not looked up"


# -- HubSpot owners ------------------------------------------------------------------------
@dataclass(frozen=True)
class Owner:
    id: str
    email: str
    first: str = ""
    last: str = ""

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first, self.last) if p)


@dataclass(frozen=True)
class Owners:
    """HubSpot's owners, or why they are not known (dry run, HubSpot refused or down)."""

    owners: tuple[Owner, ...] = ()
    problem: str | None = None
    dry_run: bool = False
    truncated: bool = False

    def by_email(self, email: str) -> Owner | None:
        wanted = email.strip().lower()
        return next((o for o in self.owners if o.email.lower() == wanted), None)

    def by_id(self, owner_id: str) -> Owner | None:
        return next((o for o in self.owners if o.id == str(owner_id)), None)

    def by_name(self, names: Iterable[str]) -> list[Owner]:
        keys = {normalise_name(n) for n in names} - {""}
        return [o for o in self.owners if normalise_name(o.name) in keys]


_owners_lock = threading.Lock()
_owners_cache: dict[str, tuple[float, Owners]] = {}


def forget_owners() -> None:
    """Drop the cached owners (tests; an operator who just added an owner waits 5 minutes)."""
    with _owners_lock:
        _owners_cache.clear()


def hubspot_owners(settings: Settings, *, timeout_s: float = 10.0) -> Owners:
    """Every active HubSpot owner, cached per process; never raises."""
    if settings.hubspot_access_token is None:
        return Owners(problem=DRY_RUN, dry_run=True)
    token = settings.hubspot_access_token.get_secret_value()
    key = hashlib.sha256(f"{settings.hubspot_base_url}\0{token}".encode()).hexdigest()
    with _owners_lock:
        cached = _owners_cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
    found = _list_owners(token, settings.hubspot_base_url, timeout_s)
    keep = OWNERS_FAILURE_CACHE_S if found.problem else OWNERS_CACHE_S
    with _owners_lock:
        _owners_cache[key] = (time.monotonic() + keep, found)
    return found


def _list_owners(token: str, base_url: str, timeout_s: float) -> Owners:
    from hubspot import HubSpot
    from urllib3.util.retry import Retry

    from worker.crm.hubspot import translate_error

    client = HubSpot(access_token=token, host=base_url, retry=Retry(0, redirect=False))
    owners: list[Owner] = []
    after: str | None = None
    deadline = time.monotonic() + OWNERS_DEADLINE_S
    for _ in range(MAX_OWNER_PAGES):
        kwargs: dict[str, Any] = {"limit": OWNERS_PAGE_SIZE, "archived": False}
        if after:
            kwargs["after"] = after
        try:
            page = client.crm.owners.owners_api.get_page(
                **kwargs, _request_timeout=(min(5.0, timeout_s), timeout_s)
            )
        except Exception as exc:
            return Owners(problem=f"HubSpot's owners could not be read: {translate_error(exc)}")
        for row in page.results or []:
            if row.email:
                owners.append(
                    Owner(str(row.id), row.email, row.first_name or "", row.last_name or "")
                )
        following = getattr(getattr(page, "paging", None), "next", None)
        after = getattr(following, "after", None)
        if not after:
            return Owners(tuple(owners))
        if time.monotonic() > deadline:
            break
    return Owners(tuple(owners), truncated=True)


def normalise_name(text: str) -> str:
    """A name as compared: no accents, no case, no punctuation, words in order.

    Sorting the words makes "Martin Alice" (UIS writes family names first) equal "Alice
    Martin".
    """
    plain = unicodedata.normalize("NFKD", text or "")
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch)).casefold()
    return " ".join(sorted(re.sub(r"[^\w]+", " ", plain).split()))


# -- matching ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    user: PlatformUser
    owner: Owner
    by: str  # "email" | "name"


@dataclass(frozen=True)
class Unmatched:
    user: PlatformUser
    reason: str


@dataclass(frozen=True)
class Known:
    """A matched user agents.yaml already lists, or whose owner it lists (then: ``note``)."""

    match: Match
    agent_email: str
    note: str = ""


@dataclass
class PlatformReport:
    listing: PlatformListing
    new: list[Match] = field(default_factory=list)
    known: list[Known] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)


@dataclass(frozen=True)
class ProposedAgent:
    email: str
    name: str
    extensions: dict[str, list[str]]
    found_by: tuple[str, ...]  # "kazoo (email)", "kavkom (name)"


@dataclass
class Discovery:
    platforms: list[PlatformReport]
    owners: Owners
    proposed: list[ProposedAgent]
    agents_file: str
    diff: str
    entries: str
    problem: str | None = None  # why no diff could be made (the entries are still given)


def match_user(user: PlatformUser, owners: Owners) -> Match | Unmatched:
    """The owner a platform user is, by email first, then by a name only one owner has."""
    if owners.problem:
        return Unmatched(user, owners.problem)
    if not user.enabled:
        return Unmatched(user, "disabled on the platform")
    if user.email:
        owner = owners.by_email(user.email)
        if owner is not None:
            return Match(user, owner, "email")
    names = [n for n in (user.name, *user.other_names) if n]
    candidates = owners.by_name(names) if names else []
    if len(candidates) == 1:
        return Match(user, candidates[0], "name")
    if len(candidates) > 1:
        ids = ", ".join(o.email for o in candidates)
        return Unmatched(
            user, f"several HubSpot owners are named {user.name!r} ({ids}): add by hand"
        )
    if user.email and names:
        return Unmatched(
            user, f"no HubSpot owner with the email {user.email} or the name {user.name!r}"
        )
    if user.email:
        return Unmatched(
            user, f"no HubSpot owner with the email {user.email} (no name on the platform)"
        )
    if names:
        return Unmatched(
            user, f"no HubSpot owner named {user.name!r} (the platform gives no email)"
        )
    return Unmatched(user, "the platform gives neither an email nor a name")


def classify(listing: PlatformListing, owners: Owners, agents: AgentDirectory) -> PlatformReport:
    """Sort one platform's users into new, already listed, and unmatched."""
    report = PlatformReport(listing)
    for user in listing.users:
        found = match_user(user, owners)
        if isinstance(found, Unmatched):
            report.unmatched.append(found)
            continue
        listed = agents.find(user.platform, user.ident)
        if listed is not None:
            note = ""
            if listed.email.lower() != found.owner.email.lower():
                note = f"HubSpot matches {found.owner.email}: check which is right"
            report.known.append(Known(found, listed.email, note))
            continue
        same_owner = agents.by_email(found.owner.email)
        if same_owner is not None:
            note = (
                f"{same_owner.email} is in agents.yaml without this {user.platform} id: add "
                f'"{user.ident}" to their extensions.{user.platform} by hand'
            )
            report.known.append(Known(found, same_owner.email, note))
            continue
        report.new.append(found)
    return report


def propose(reports: list[PlatformReport]) -> list[ProposedAgent]:
    """One new agent per HubSpot owner, with every id found for them on every platform."""
    by_owner: dict[str, list[Match]] = {}
    for report in reports:
        for found in report.new:
            by_owner.setdefault(found.owner.email.lower(), []).append(found)
    proposed = []
    for matches in by_owner.values():
        owner = matches[0].owner
        extensions: dict[str, list[str]] = {}
        found_by: list[str] = []
        for found in matches:
            idents = extensions.setdefault(found.user.platform, [])
            if found.user.ident not in idents:
                idents.append(found.user.ident)
            label = f"{found.user.platform} ({found.by})"
            if label not in found_by:
                found_by.append(label)
        name = owner.name or matches[0].user.name
        proposed.append(ProposedAgent(owner.email, name, extensions, tuple(found_by)))
    return sorted(proposed, key=lambda p: (p.name.casefold(), p.email.lower()))


# -- agents.yaml ---------------------------------------------------------------------------
_PLAIN = re.compile(r"^[^\W\d_][\w .'@+-]*$")


def _scalar(text: str) -> str:
    """Plain when YAML reads it back unchanged, else a JSON (= YAML) double-quoted string."""
    if _PLAIN.match(text) and ": " not in text and " #" not in text:
        try:
            if yaml.safe_load(text) == text:
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def render_entries(proposed: list[ProposedAgent]) -> str:
    """The new agents as agents.yaml list items, in the shipped file's style."""
    lines: list[str] = []
    for agent in proposed:
        lines.append(f"  # found by `callhook agents discover`: {', '.join(agent.found_by)}")
        lines.append(f"  - email: {_scalar(agent.email)}")
        if agent.name:
            lines.append(f"    name: {_scalar(agent.name)}")
        lines.append("    extensions:")
        for platform, idents in agent.extensions.items():
            items = ", ".join(json.dumps(i, ensure_ascii=False) for i in idents)
            lines.append(f"      {platform}: [{items}]")
    return "".join(line + "\n" for line in lines)


def agents_file(mappings_dir: Path) -> Path:
    """The file of kind ``agents`` in the mappings directory (``agents.yaml`` by default)."""
    for path in sorted([*mappings_dir.glob("*.yaml"), *mappings_dir.glob("*.yml")]):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("kind") == "agents":
            return path
    return mappings_dir / "agents.yaml"


def read_directory(path: Path) -> tuple[str, AgentDirectory, str | None]:
    """The file's text and agents; an unreadable or invalid file counts as empty, and says so."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "", AgentDirectory(kind="agents"), None
    except OSError as exc:
        return "", AgentDirectory(kind="agents"), f"{path.name} could not be read: {exc.strerror}"
    try:
        return text, AgentDirectory.model_validate(yaml.safe_load(text)), None
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            text,
            AgentDirectory(kind="agents"),
            f"{path.name} is not valid ({first}): fix it first",
        )


def proposed_diff(
    path: Path, current: str, entries: str, emails: list[str]
) -> tuple[str, str | None]:
    """A unified diff appending ``entries`` to the file, checked to load with the new agents.

    Appending works when ``agents:`` is the file's last key, as in the shipped file; when
    it is not (or the list is written ``[]``), no diff is given and the caller shows the
    entries to paste under ``agents:`` instead.
    """
    if not entries:
        return "", None
    label = f"{path.parent.name}/{path.name}"
    if not current.strip():
        new = "kind: agents\nagents:\n" + entries
        before: list[str] = []
        from_label = "/dev/null"
    else:
        new = current + ("" if current.endswith("\n") else "\n") + entries
        before = current.splitlines(keepends=True)
        from_label = f"a/{label}"
    try:
        directory = AgentDirectory.model_validate(yaml.safe_load(new))
    except (yaml.YAMLError, ValidationError, TypeError):
        directory = None
    if directory is None or any(directory.by_email(e) is None for e in emails):
        return "", (
            f"the entries cannot simply be appended to {label} (is `agents:` its last key?): "
            "paste them under `agents:` by hand"
        )
    lines = difflib.unified_diff(before, new.splitlines(keepends=True), from_label, f"b/{label}")
    return "".join(lines), None


# -- the whole run -------------------------------------------------------------------------
def discover(
    settings: Settings,
    *,
    timeouts: Timeouts = DIRECTORY_TIMEOUTS,
    agents_path: Path | None = None,
) -> Discovery:
    """List every configured platform and HubSpot's owners side by side, match, propose."""
    path = agents_path or agents_file(settings.mappings_dir)
    current, directory, problem = read_directory(path)
    with ThreadPoolExecutor(max_workers=1) as pool:
        owners_future = pool.submit(hubspot_owners, settings, timeout_s=timeouts[1])
        listings = list_platform_users(settings, timeouts)
        owners = owners_future.result()
    reports = [classify(listing, owners, directory) for listing in listings]
    proposed = propose(reports)
    entries = render_entries(proposed)
    diff, diff_problem = (
        ("", None)
        if problem
        else proposed_diff(path, current, entries, [p.email for p in proposed])
    )
    label = f"{path.parent.name}/{path.name}"
    return Discovery(reports, owners, proposed, label, diff, entries, problem or diff_problem)
