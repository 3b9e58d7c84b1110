"""A request cannot forge a log line: request-derived text is escaped by the formatter.

The Procfile deployment test checks the same through gunicorn's access log; this one
checks the application's own lines, which name the platform from the URL.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import KAVKOM_SECRET, Environment, base_env, fresh_database
from worker.core.log_format import FORMAT, OneLineFormatter, escape


@pytest.fixture
def captured(redis_server, tmp_path) -> Iterator[tuple[Any, io.StringIO]]:  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    env = base_env(fresh_database("sqlite", tmp_path), redis_server.url, tmp_path / "i", None)
    environment = Environment()
    environment.set(env)
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(OneLineFormatter(FORMAT))
    logging.getLogger().addHandler(handler)
    try:
        yield create_app({"TESTING": True}).test_client(), sink
    finally:
        logging.getLogger().removeHandler(handler)
        environment.restore()


def test_a_line_break_in_the_platform_name_stays_on_its_line(captured) -> None:  # type: ignore[no-untyped-def]
    client, sink = captured
    forged = "INFO callhook.webhook webhook.accepted platform=kavkom id=1"
    answer = client.post(
        "/webhooks/x%0D%0A" + forged.replace(" ", "%20"),
        json={"callUuid": "a"},
        headers={"Authorization": f"Bearer {KAVKOM_SECRET}"},
    )
    assert answer.status_code == 404
    lines = sink.getvalue().splitlines()
    assert lines, "the refusal is logged"
    assert not [line for line in lines if forged in line and "\\x0d\\x0a" not in line]
    assert any("platform=x\\x0d\\x0a" + forged in line for line in lines)


def test_escape_keeps_text_and_shows_control_characters() -> None:
    assert escape("plain é text") == "plain é text"
    assert escape("a\nb\rc\x1b[2Jd\u2028e\x85") == "a\\x0ab\\x0dc\\x1b[2Jd\\u2028e\\x85"
