"""Ctrl-C on `callhook serve` stops it within seconds, even with an agent page open.

An open agent page holds a web thread on a long-lived SSE stream. gunicorn waits up to its
graceful timeout (20 s) for such threads; before the streams learnt to end when their
process is stopping, a trial's Ctrl-C took about 19 s. This checks a bound on the process's
exit (a few seconds), not a performance figure.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, free_port, wait_until
from tests.test_serve import status

CALLHOOK = str(Path(sys.executable).parent / "callhook")
# Generous for a loaded CI machine, far below gunicorn's 20 s graceful timeout.
EXIT_WITHIN_S = 8.0


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "HUBSPOT_ACCESS_TOKEN")
    }
    env.update(INSTANCE_DIR=str(tmp_path / "instance"), KAVKOM_WEBHOOK_SECRET="dev-secret")
    return env


def _open_stream(port: int, token: str) -> http.client.HTTPConnection:
    """An agent page's stream, as the page opens it, read up to its first comment."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/agent/stream", headers={"X-Callhook-Agent": token})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    assert response.readline().startswith(b"retry:")
    return conn


def test_ctrl_c_stops_serve_promptly_with_an_agent_stream_open(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path)
    out = tmp_path / "serve.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [CALLHOOK, "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(
            lambda: proc.poll() is not None or status(f"http://127.0.0.1:{port}/healthz") == 200,
            timeout=60,
        )
        assert proc.poll() is None, out.read_text()
        link = subprocess.run(
            [CALLHOOK, "agents", "link", "alice@example.com"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        streams = [_open_stream(port, link.split("?k=", 1)[1]) for _ in range(2)]

        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        proc.wait(timeout=30)
        took = time.monotonic() - started
        assert took < EXIT_WITHIN_S, f"serve took {took:.1f} s to stop:\n{out.read_text()}"
        for stream in streams:
            stream.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
