"""Entry point for ``celery -A worker.celery_worker``: configures, then exposes the app."""

from worker.celery_app import configure
from worker.mapping_files import worker_mapping_files

# Fail at boot, not at the first call, when a mapping file is broken.
worker_mapping_files()
app = configure()
