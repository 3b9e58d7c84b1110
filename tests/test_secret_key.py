"""SECRET_KEY holds across processes: required with a server database, never too short.

Each dyno of a deployment (and each `heroku run`) must sign agents' links and seal
platform tokens with one key; a key generated per process would make links printed by
`heroku run callhook agents link` useless on the web dynos.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SERVER_DB = "postgresql://postgres@127.0.0.1:5432/test"


def callhook(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    for key, value in env.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return subprocess.run(
        [str(Path(sys.executable).parent / "callhook"), *args],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_server_database_without_secret_key_stops_every_process_with_the_reason(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    result = callhook("db", "check", DATABASE_URL=SERVER_DB, INSTANCE_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    assert "callhook secret" in result.stderr


def test_a_short_secret_key_is_refused_even_with_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = callhook("db", "check", SECRET_KEY="x", INSTANCE_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr and "at least 32 bytes" in result.stderr


def test_callhook_secret_prints_a_key_the_settings_accept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from worker.core.settings import Settings

    first = callhook("secret").stdout.strip()
    second = callhook("secret").stdout.strip()
    assert first != second and len(first.encode()) >= 32
    settings = Settings(database_url=SERVER_DB, secret_key=first)  # type: ignore[arg-type]
    assert settings.signing_key() == first


def test_the_embedded_default_still_needs_no_secret_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from worker.core.settings import Settings

    one = Settings(instance_dir=tmp_path)
    two = Settings(instance_dir=tmp_path)
    assert one.signing_key() == two.signing_key()  # shared by every process of this machine
    assert len(one.signing_key()) >= 32
