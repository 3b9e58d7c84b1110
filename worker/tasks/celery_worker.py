"""Entry point for ``celery -A worker.tasks.celery_worker``: configures, then exposes the app."""

from worker.core.error_reporting import init_error_reporting
from worker.core.log_format import configure_logging
from worker.core.settings import get_settings
from worker.crm.mapping_files import worker_mapping_files
from worker.tasks.celery_app import configure

configure_logging()
get_settings().instance_dir.mkdir(parents=True, exist_ok=True)  # beat's schedule file
# Fail at boot, not at the first call, when a mapping file is broken.
worker_mapping_files()
app = configure()
# Before the pool forks: its children inherit the SDK (it restarts its thread per pid).
init_error_reporting(get_settings())
