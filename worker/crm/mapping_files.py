"""Reading every file of ``MAPPINGS_DIR``, each by its ``kind``, reporting all problems at once.

The worker needs the CRM and agent files; the receiver also needs the platform
files. Both call ``load_mapping_files`` so start-up and ``callhook mappings check``
judge the directory the same way. It lives with the CRM adapters: the CRM file is what
the worker needs from the directory, validated by the CRM's own schema, and the factory
builds the adapter from it (in the core, it would make core and CRM import each other).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.core.agents import AgentDirectory
from worker.core.settings import get_settings
from worker.core.yaml_files import MappingFileError, read_yaml, validate
from worker.crm.hubspot_config import HubSpotMapping

KINDS = ("platform", "crm", "agents")


@dataclass
class MappingFiles:
    """The validated contents of the mappings directory."""

    platforms: dict[str, Any] = field(default_factory=dict)  # name → PlatformMapping
    # Each platform's display name (its file's `name:`, e.g. "KAZOO (2600Hz)"), read by
    # the worker too: call bodies say "via KAZOO (2600Hz)", not "via Kazoo".
    platform_names: dict[str, str] = field(default_factory=dict)
    hubspot: HubSpotMapping | None = None
    agents: AgentDirectory = field(default_factory=lambda: AgentDirectory(kind="agents"))
    files: list[Path] = field(default_factory=list)


def load_mapping_files(directory: Path, platform_model: Any = None) -> MappingFiles:
    """Load and validate every ``*.yaml`` file; raise one error listing every problem.

    ``platform_model`` is the receiver's platform schema; the worker, which never
    reads provider payloads, passes None and platform files are only checked for a kind.
    """
    problems: list[str] = []
    result = MappingFiles()
    if not directory.is_dir():
        raise MappingFileError([f"{directory}: MAPPINGS_DIR is not a directory"])
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        result.files.append(path)
        try:
            data = read_yaml(path)
            kind = data.get("kind")
            if kind not in KINDS:
                raise MappingFileError([f"{path}: kind: must be one of {', '.join(KINDS)}"])
            if kind == "platform":
                name = data.get("name")
                result.platform_names[path.stem] = name if isinstance(name, str) else path.stem
                if platform_model is None:
                    continue
                mapping = validate(platform_model, data, path)
                if mapping.platform != path.stem:
                    raise MappingFileError(
                        [
                            f"{path}: platform: {mapping.platform!r} must match the file name "
                            f"{path.stem!r} (it is served at /webhooks/{path.stem})"
                        ]
                    )
                result.platforms[mapping.platform] = mapping
            elif kind == "crm":
                if result.hubspot is not None:
                    raise MappingFileError([f"{path}: kind: a second CRM file; keep one"])
                result.hubspot = validate(HubSpotMapping, data, path)
            else:
                result.agents = validate(AgentDirectory, data, path)
        except MappingFileError as exc:
            problems.extend(exc.problems)
    if result.hubspot is None and not problems:
        problems.append(f"{directory}: no CRM file (kind: crm) found; callhook ships hubspot.yaml")
    if problems:
        raise MappingFileError(problems)
    return result


@functools.cache
def worker_mapping_files() -> MappingFiles:
    """The CRM and agent files, for the worker process (cached; tests clear it)."""
    return load_mapping_files(get_settings().mappings_dir)
