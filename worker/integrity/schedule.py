"""Beat entries of the integrity jobs (tasks in `worker/integrity/tasks.py`), merged into the
Celery app's `beat_schedule`. Kept apart from the tasks so `worker/celery.py` can import it."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "report-suspicious-signatures": {
        "task": "integrity.report_suspicious",
        "schedule": crontab(minute=5),  # hourly, for the hour before
    },
    "reconcile-signature-counts": {
        "task": "integrity.reconcile_counts",
        "schedule": crontab(hour=3, minute=17),  # nightly, UTC
    },
}
