"""`callhook serve`, the README's first command: a trial on one machine.

It must listen on 127.0.0.1 only (a laptop on a café network must not expose callers'
numbers), and hand the person who started it an operator sign-in for the dry-run page.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, free_port, wait_until


def status(url: str, opener: urllib.request.OpenerDirector | None = None) -> int | None:
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_serve_listens_on_loopback_only_and_prints_an_operator_sign_in(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "HUBSPOT_ACCESS_TOKEN")
    }
    env.update(INSTANCE_DIR=str(tmp_path / "instance"), KAVKOM_WEBHOOK_SECRET="dev-secret")
    out = tmp_path / "serve.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "callhook"), "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(
            lambda: proc.poll() is not None or status(f"http://127.0.0.1:{port}/healthz") == 200,
            timeout=60,
        )
        assert proc.poll() is None, out.read_text()
        # 127.0.0.2 is this machine too: a socket bound to every interface would answer it.
        with socket.socket() as probe:
            probe.settimeout(2)
            assert probe.connect_ex(("127.0.0.2", port)) != 0

        text = out.read_text()
        link = re.search(r"operator sign-in for this machine: (\S+)", text)
        assert link, text
        assert status(f"http://127.0.0.1:{port}/dry-run") == 401
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        assert status(link.group(1), opener) == 200  # followed to /admin
        assert status(f"http://127.0.0.1:{port}/dry-run", opener) == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Whatever serve left of its group (a worker's pool child) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
