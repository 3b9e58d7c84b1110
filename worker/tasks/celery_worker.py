"""Entry point for ``celery -A worker.celery_worker``: configures, then exposes the app."""

from worker.celery_app import configure
from worker.error_reporting import init_error_reporting
from worker.log_format import configure_logging
from worker.mapping_files import worker_mapping_files
from worker.settings import get_settings

configure_logging()
get_settings().instance_dir.mkdir(parents=True, exist_ok=True)  # beat's schedule file
# Fail at boot, not at the first call, when a mapping file is broken.
worker_mapping_files()
app = configure()
# Before the pool forks: its children inherit the SDK (it restarts its thread per pid).
init_error_reporting(get_settings())
