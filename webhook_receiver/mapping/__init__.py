"""The mapping engine: platform payloads in, canonical call events out."""

from __future__ import annotations

from pathlib import Path

from webhook_receiver.mapping.engine import MappingError, MapResult, map_payload
from webhook_receiver.mapping.schema import PlatformMapping
from worker.crm.mapping_files import MappingFiles, load_mapping_files


def load_mappings(directory: Path) -> MappingFiles:
    """Every mapping file, platforms included, validated (raises MappingFileError)."""
    return load_mapping_files(directory, PlatformMapping)


__all__ = ["MapResult", "MappingError", "PlatformMapping", "load_mappings", "map_payload"]
