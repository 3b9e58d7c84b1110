"""gunicorn settings (``gunicorn -c python:webhook_receiver.web.gunicorn_conf``).

Heroku-style: bind ``$PORT``, log to stdout, finish requests within the
platform's 30 s shutdown window.
"""

import logging
import os
import signal
from typing import Any

from gunicorn.glogging import Logger

from worker.core.log_format import configured_format, formatter_for


class OneLineLogger(Logger):
    """gunicorn's logger with callhook's escaping formatter (worker/core/log_format.py).

    The access log prints the request path decoded: a ``%0A`` in a URL would otherwise
    start a forged line in the logs. With ``LOG_FORMAT=json`` both logs are written as
    the application's JSON lines, so one parser reads every line of the web process.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        log_format = configured_format()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                current = handler.formatter or logging.Formatter()
                handler.setFormatter(formatter_for(log_format, current._fmt, current.datefmt))


def post_worker_init(worker: Any) -> None:
    """Let open agent streams end as soon as this worker is told to stop.

    An agent page's SSE stream never ends by itself: gunicorn waited up to
    `graceful_timeout` for the threads serving such responses (Ctrl-C on `callhook serve`
    or a deploy's SIGTERM took ~20 s with one page open), and the pages the stream hub
    holds would be cut rather than ended. Each stop signal now first sets
    `agent_page.SHUTTING_DOWN`, which ends every stream within a second, then does what
    gunicorn does (a graceful stop still finishes other requests).

    A stop signal that arrives while another one's handler runs is ignored: that handler
    is stopping the worker already. Ctrl-C sends SIGINT to the whole process group and the
    master then sends SIGQUIT: nested inside the first quick stop, the second one waited
    forever on the lock the first held (the thread pool's shutdown lock), and the worker
    lived until the master killed it, 20 s later.
    """
    from webhook_receiver.web import agent_page

    handling: list[int] = []  # the signal whose handler runs now (a quick stop never returns)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(number)
        if not callable(previous):
            continue

        def stop(sig: int, frame: Any, previous: Any = previous) -> None:
            agent_page.SHUTTING_DOWN.set()
            if handling:
                return
            handling.append(sig)
            previous(sig, frame)  # SIGINT and SIGQUIT: exits (SystemExit) from here
            handling.clear()  # SIGTERM: returns; a quick stop may still follow

        signal.signal(number, stop)


def worker_exit(server: Any, worker: Any) -> None:
    """Before the worker's process ends, the pages its stream hub holds get the end of
    their response (they reconnect at once) rather than a cut connection; a second at most."""
    from webhook_receiver.web import agent_streams

    agent_streams.stop(timeout=2)


# Every interface, as a platform's router needs; `callhook serve` (a trial on a laptop)
# passes --bind 127.0.0.1:… on its command line, which wins over this file.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# Threads: webhook handling waits on the database. Open agent pages (long-lived SSE
# responses) hold none: once answered up to their replay, their connections are handed to
# the process's stream hub, one event-loop thread (agent_streams.py).
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "32"))
# Load the app once in the master: a broken mapping file stops start-up with its message,
# and the embedded Redis (when REDIS_URL is unset) is started once, not per worker.
preload_app = True
timeout = 25
graceful_timeout = 20
keepalive = 5
accesslog = "-"
# The path without its query string: platforms that authenticate with `?token=` must not
# see their secret written to the logs (%(r)s would print the whole request line).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss "%(a)s"'
errorlog = "-"
logger_class = OneLineLogger
forwarded_allow_ips = "*"
