"""The Flask app factory (served by gunicorn: the Procfile's `webhook_receiver.web:create_app()`).

The app: webhooks, agent pages, the HubSpot widget, the operator console, health and metrics.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from webhook_receiver.deliveries.auth import configured_secrets
from webhook_receiver.mapping import load_mappings
from webhook_receiver.web.body_limit import BodyLimit
from worker.core.error_reporting import init_error_reporting
from worker.core.log_format import configure_logging
from worker.core.metrics import WEBHOOK_DELIVERIES
from worker.core.settings import ConfigError, get_settings
from worker.tasks.celery_app import configure as configure_celery

log = logging.getLogger("callhook")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; a configuration error stops start-up with a readable message."""
    configure_logging()
    try:
        settings = get_settings()
        mappings = load_mappings(settings.mappings_dir)
        configure_celery()
    except ConfigError as exc:
        raise SystemExit(f"callhook: configuration error:\n{exc}") from None
    init_error_reporting(
        settings, [env for m in mappings.platforms.values() for env in m.auth.secret_envs]
    )

    app = Flask(__name__, instance_path=str(settings.instance_dir.resolve()))
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    # Signs Flask's session cookie, which carries only the console's one-shot messages.
    app.secret_key = "flask-session:" + settings.signing_key()
    # Flask's documented way to wrap its WSGI app (mypy sees a method being replaced).
    app.wsgi_app = BodyLimit(app.wsgi_app, settings.max_body_bytes)  # type: ignore[method-assign]
    if test_config:
        app.config.update(test_config)
    app.extensions["callhook.mappings"] = mappings

    for name, mapping in mappings.platforms.items():
        if mapping.auth.location != "none" and not configured_secrets(mapping.auth):
            log.warning(
                "config.secret_missing platform=%s env=%s: its webhooks will get 401",
                name,
                ",".join(mapping.auth.secret_envs),
            )
    if settings.dry_run:
        log.warning("config.dry_run HUBSPOT_ACCESS_TOKEN is not set: calls are recorded, not sent")

    from webhook_receiver.cli.main import register_commands
    from webhook_receiver.web import (
        agent_page,
        browser_headers,
        console,
        dry_run_page,
        health,
        hubspot_widget,
        kwebbl_connect,
        metrics_page,
        operator_auth,
        webhooks,
    )

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(dry_run_page.bp)
    app.register_blueprint(agent_page.bp)
    app.register_blueprint(hubspot_widget.bp)
    app.register_blueprint(kwebbl_connect.bp)
    app.register_blueprint(operator_auth.bp)
    app.register_blueprint(metrics_page.bp)
    console.install(app)
    browser_headers.install(app)
    register_commands(app.cli)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> ResponseReturnValue:
        log.info("webhook.too_large limit=%s", settings.max_body_bytes)
        platform = (request.view_args or {}).get("platform")
        if request.endpoint == "webhooks.receive":
            known = platform if platform in mappings.platforms else "unknown"
            WEBHOOK_DELIVERIES.inc(platform=known, result="refused", status=413)
        return jsonify(error="too_large", reason=f"body over {settings.max_body_bytes} bytes"), 413

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        return jsonify(
            error=(exc.name or "error").lower().replace(" ", "_"), reason=exc.description
        ), exc.code or 500  # an HTTPException raised by hand may carry no code

    return app
