"""signature-ingest: the Celery side and everything the intake shares with it.

This package deliberately imports nothing heavy: the intake (`api_stub`) imports
`worker.settings`, `worker.keys` and `worker.pipeline` without pulling in Celery.
`celery -A worker` finds the app in `worker/celery.py` by Celery's own convention.
"""
