"""Entry point for ``celery -A worker.celery_worker``: configures, then exposes the app."""

from worker.celery_app import configure
from worker.log_format import configure_logging
from worker.mapping_files import worker_mapping_files
from worker.settings import get_settings

configure_logging()
get_settings().instance_dir.mkdir(parents=True, exist_ok=True)  # beat's schedule file
# Fail at boot, not at the first call, when a mapping file is broken.
worker_mapping_files()
app = configure()
