"""``/metrics``: who may read it, and that real traffic moves the numbers.

Deliveries go through the real receiver; the worker is a real Celery process, a separate
process from the one serving ``/metrics``, so a counter it increments is only seen here
if the processes really share their counts (worker/core/metrics.py: in Redis).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KAVKOM_SECRET, ROOT, Environment, load_fixture, wait_until
from webhook_receiver.web.operator_auth import COOKIE

AUTH = {"Authorization": f"Bearer {KAVKOM_SECRET}"}
METRICS_TOKEN = "metrics-token-for-tests-0123456789abcdef"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(scope="module", autouse=True)
def _metrics_token(stack: dict[str, Any]) -> Iterator[None]:
    env = Environment()
    env.set({"METRICS_TOKEN": METRICS_TOKEN})
    yield
    env.restore()


@pytest.fixture(autouse=True)
def _counting_again() -> None:
    """An earlier module that stopped Redis left this process not counting for a while
    (worker/core/metrics.py, QUIET_AFTER_ERROR_S): Redis is up again, so count from now."""
    from worker.core import metrics

    metrics._quiet_until = 0.0


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Any) -> Samples:
    response = client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def cdr(call_id: str, number: str) -> dict[str, Any]:
    payload = json.loads(load_fixture("kavkom", "cdr__outbound.json"))
    payload.update(callUuid=call_id, number=number, duration=42)
    return payload


def test_metrics_need_the_token_or_an_operator_sign_in(client) -> None:  # type: ignore[no-untyped-def]
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "callhook_" not in refused.get_data(as_text=True)
    wrong = {"Authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"}
    assert client.get("/metrics", headers=wrong).status_code == 401
    # A platform's webhook secret is not the metrics token.
    assert client.get("/metrics", headers=AUTH).status_code == 401
    assert client.get("/metrics", headers=SCRAPER).status_code == 200

    from webhook_receiver.cli.main import cli

    link = CliRunner().invoke(cli, ["admin", "link", "ops@example.com"]).output.strip()
    token = link.split("?t=", 1)[1]
    # An agent's link is not an operator's sign-in.
    agent = CliRunner().invoke(cli, ["agents", "link", "alice@example.com"]).output.strip()
    client.set_cookie(COOKIE, agent.split("?k=", 1)[1])
    assert client.get("/metrics").status_code == 401
    client.set_cookie(COOKIE, token)
    page = client.get("/metrics")
    assert page.status_code == 200
    assert "callhook_queue_depth" in page.get_data(as_text=True)


def test_a_call_through_the_stack_moves_the_counters(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    before = scrape(client)
    answer = client.post("/webhooks/kavkom", json=cdr("metrics-1", "33612345690"), headers=AUTH)
    assert answer.json["status"] == "accepted"
    again = client.post("/webhooks/kavkom", json=cdr("metrics-1", "33612345690"), headers=AUTH)
    assert again.json["status"] == "duplicate"
    refused = client.post("/webhooks/kavkom", json={}, headers={"Authorization": "Bearer no"})
    assert refused.status_code == 401
    assert client.post("/webhooks/x%0Ay", json={}, headers=AUTH).status_code == 404

    def synced() -> Samples | None:
        now = scrape(client)
        count = "callhook_crm_sync_latency_seconds_count"
        moved = value(now, count, action="create") > value(before, count, action="create")
        return now if moved else None

    after = wait_until(synced, timeout=30)
    deliveries = "callhook_webhook_deliveries_total"
    for labels in (
        {"platform": "kavkom", "result": "accepted", "status": "200"},
        {"platform": "kavkom", "result": "duplicate", "status": "200"},
        {"platform": "kavkom", "result": "refused", "status": "401"},
        # The URL's text is never a label.
        {"platform": "unknown", "result": "refused", "status": "404"},
    ):
        assert value(after, deliveries, **labels) == value(before, deliveries, **labels) + 1
    # Counted by the worker process (a contact search and the create, at least).
    hubspot_2xx = "callhook_hubspot_requests_total"
    assert value(after, hubspot_2xx, status="2xx") >= value(before, hubspot_2xx, status="2xx") + 2
    folds = "callhook_fold_latency_seconds_count"
    assert value(after, folds, platform="kavkom") == value(before, folds, platform="kavkom") + 1
    syncs = "callhook_crm_syncs_total"
    assert value(after, syncs, state="synced") > value(before, syncs, state="synced")
    assert value(after, "callhook_metrics_store_up") == 1
    for queue in ("callhook", "pops", "crm"):
        assert ("callhook_queue_depth", frozenset({("queue", queue)})) in after


def test_hubspot_refusals_are_counted_by_status(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    before = scrape(client)
    hubspot.fail_next(1, 429, retry_after=0.5)
    answer = client.post("/webhooks/kavkom", json=cdr("metrics-429", "33612345691"), headers=AUTH)
    assert answer.json["status"] == "accepted"

    def counted() -> Samples | None:
        now = scrape(client)
        name = "callhook_hubspot_requests_total"
        return now if value(now, name, status="429") > value(before, name, status="429") else None

    wait_until(counted, timeout=30)


def test_a_screen_pop_is_counted_with_its_latency(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    before = scrape(client)
    payload = json.loads(load_fixture("kavkom", "live__ringing_inbound_with_variables.json"))
    payload.update(callUuid="metrics-pop", state="ringing", number="33612345692",
                   presenceId="1001@client.kavkom.com")  # fmt: skip
    assert client.post("/webhooks/kavkom", json=payload, headers=AUTH).status_code == 200

    def popped() -> Samples | None:
        now = scrape(client)
        name = "callhook_pops_sent_total"
        return now if value(now, name) > value(before, name) else None

    after = wait_until(popped, timeout=30)
    count = "callhook_pop_latency_seconds_count"
    assert value(after, count) == value(before, count) + 1
    # The card is in the stream within the latency's largest finite bucket.
    assert value(after, "callhook_pop_latency_seconds_bucket", le="30.0") == value(after, count)


def test_counts_from_separate_processes_add_up_and_queues_are_measured(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Two processes that share nothing but Redis count into the same numbers."""
    from worker.core.metrics import RedisCollector

    url = redis_server.url.rsplit("/", 1)[0] + "/7"  # a database of its own
    direct = redis.Redis.from_url(url)
    direct.flushdb()
    script = (
        "from worker.core.metrics import HUBSPOT_REQUESTS, FOLD_LATENCY\n"
        "HUBSPOT_REQUESTS.inc(status='2xx')\n"
        "FOLD_LATENCY.observe(0.3, platform='uis')\n"
    )
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "REDIS_URL": url, "PYTHONPATH": str(ROOT)},
            check=True,
        )
    direct.rpush("callhook", "a", "b", "c")
    direct.rpush("crm", "d")
    direct.rpush("crm\x06\x163", "e")  # a message sent with a priority
    families = {f.name: f for f in RedisCollector(direct).collect()}
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in families.values()
        for s in family.samples
    }
    assert samples[("callhook_hubspot_requests_total", frozenset({("status", "2xx")}))] == 2
    uis = frozenset({("platform", "uis")})
    assert samples[("callhook_fold_latency_seconds_count", uis)] == 2
    assert samples[("callhook_fold_latency_seconds_sum", uis)] == pytest.approx(0.6)
    assert samples[("callhook_fold_latency_seconds_bucket", uis | {("le", "0.25")})] == 0
    assert samples[("callhook_fold_latency_seconds_bucket", uis | {("le", "0.5")})] == 2
    depth = "callhook_queue_depth"
    assert samples[(depth, frozenset({("queue", "callhook")}))] == 3
    assert samples[(depth, frozenset({("queue", "crm")}))] == 2
    assert samples[(depth, frozenset({("queue", "pops")}))] == 0
    direct.flushdb()
