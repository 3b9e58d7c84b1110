"""A `rediss://` REDIS_URL says how its certificate is checked (Heroku's is self-signed).

Celery refuses a `rediss://` broker URL that does not say, and redis-py checks the
certificate by default: REDIS_SSL_CERT_REQS (default `required`) fills the gap, and a URL
that already says keeps its word.
"""

from __future__ import annotations

import redis

from worker.core.redis_conn import celery_broker_url, with_tls_policy

HEROKU = "rediss://default:pw@ec2-1-2-3-4.compute-1.amazonaws.com:6380"


def test_a_tls_url_gets_the_configured_certificate_policy() -> None:
    url = with_tls_policy(HEROKU, "none")
    assert url == HEROKU + "?ssl_cert_reqs=none"
    pool = redis.Redis.from_url(url).connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    assert celery_broker_url(url) == url
    assert with_tls_policy(HEROKU + "/0?socket_timeout=2", "required").endswith(
        "/0?socket_timeout=2&ssl_cert_reqs=required"
    )


def test_a_url_that_says_or_needs_no_tls_is_left_alone() -> None:
    said = HEROKU + "?ssl_cert_reqs=required"
    assert with_tls_policy(said, "none") == said
    for plain in ("redis://127.0.0.1:6379/0", "unix:///tmp/redis.sock"):
        assert with_tls_policy(plain, "none") == plain


def test_the_setting_reaches_the_process_url(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import reset_process_state
    from worker.core.redis_conn import redis_url

    monkeypatch.setenv("REDIS_URL", HEROKU)
    monkeypatch.setenv("REDIS_SSL_CERT_REQS", "none")
    reset_process_state()
    try:
        assert redis_url() == HEROKU + "?ssl_cert_reqs=none"
    finally:
        monkeypatch.undo()
        reset_process_state()
