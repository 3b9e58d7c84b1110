"""Dependency floors admit no release with a published advisory that concerns callhook.

pip installs the newest release allowed, but a user pinning an older one (a lock file, a
distribution package) must be stopped by the floor. `.ci/audit` checks what is installed;
this checks what `pyproject.toml` allows. Each entry: a vulnerable release, its advisory.
"""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

VULNERABLE = [
    ("jinja2", "3.1.5", "CVE-2025-27516: sandbox escape through |attr (hubspot.yaml runs there)"),
    ("jinja2", "3.1.4", "CVE-2024-56326: sandbox escape through str.format"),
    ("requests", "2.32.3", "CVE-2024-47081: .netrc credentials sent to other hosts"),
    ("cryptography", "44.0.0", "CVE-2024-12797: bundled OpenSSL"),
    ("werkzeug", "3.0.5", "CVE-2024-49767: multipart form memory exhaustion"),
    ("werkzeug", "3.1.3", "CVE-2025-66221: safe_join and Windows device names"),
    ("gunicorn", "22.0.0", "CVE-2024-6827: request smuggling (Transfer-Encoding)"),
    ("flask", "3.1.0", "CVE-2025-47278: signing with a fallback key"),
    ("urllib3", "2.5.0", "CVE-2025-66471: unbounded decompression"),
]


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {r.name.lower(): r for r in requirements}


@pytest.mark.parametrize(("name", "version", "advisory"), VULNERABLE)
def test_floor_excludes_the_vulnerable_release(name: str, version: str, advisory: str) -> None:
    requirement = declared().get(name)
    assert requirement is not None, f"{name} must be declared with a floor ({advisory})"
    assert not requirement.specifier.contains(version), f"{name} {version} allowed: {advisory}"
