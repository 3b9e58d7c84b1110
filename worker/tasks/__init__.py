"""The Celery side: the app, its tasks (published by name: `publish`), and the work they
do: from a stored delivery to a folded call (`pipeline`), CRM logging, screen-pops.
"""
