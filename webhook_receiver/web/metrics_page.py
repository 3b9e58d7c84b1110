"""``GET /metrics``: Prometheus's text format, for a scraper or a signed-in operator.

The numbers are counted by every process into Redis (worker/core/metrics.py explains why);
any web process answers for all of them. They say how busy callhook is and with which
platforms, not who called whom, but they are still the operator's: a scraper presents
``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time), a person signs in
as an operator. Anything else gets 401.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from webhook_receiver.web.operator_auth import SIGN_IN_HINT, signed_in_operator
from worker.core.metrics import RedisCollector
from worker.core.metrics import flush as flush_metrics
from worker.core.settings import get_settings

bp = Blueprint("metrics", __name__)

# Only callhook's own numbers: the scraped process's CPU and memory (prometheus_client's
# default collectors) would describe one gunicorn worker picked at random.
_registry = CollectorRegistry(auto_describe=False)
_registry.register(RedisCollector())


def _bearer_token_ok() -> bool:
    expected = get_settings().metrics_token
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if expected is None or scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(
        presented.strip().encode(), expected.get_secret_value().strip().encode()
    )


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    if not _bearer_token_ok() and signed_in_operator() is None:
        response = jsonify(
            error="unauthorized",
            reason=f"send Authorization: Bearer <METRICS_TOKEN>, or {SIGN_IN_HINT}",
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="callhook metrics"'
        return response
    flush_metrics()  # this process's latest counts are part of the scrape
    return Response(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
