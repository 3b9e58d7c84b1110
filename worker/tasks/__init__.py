"""The Celery side: the app, its tasks (published by name, see publish), and the work they do: the pipeline from a stored delivery to a folded call, CRM logging, screen-pops."""
