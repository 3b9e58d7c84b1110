"""Loading the user's YAML files with errors that name file, key and reason.

Users configure callhook by editing these files, so a mistake must read like
``mappings/kavkom.yaml: events[0].fields.stage.map: Input should be a valid
dictionary`` rather than a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from worker.core.settings import ConfigError

M = TypeVar("M", bound=BaseModel)


class MappingFileError(ConfigError):
    """One or more problems in the mapping files, one line per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingFileError([f"{path}:{where}: not valid YAML: {problem}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError([f"{path}: cannot be read: {exc}"]) from None
    if not isinstance(data, dict):
        raise MappingFileError([f"{path}: (top level): expected a mapping of keys to values"])
    return data


def validate(model: type[M], data: dict[str, Any], path: Path) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{path}: {format_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise MappingFileError(problems) from None
