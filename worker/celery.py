"""The Celery app: `celery -A worker worker -Q ingest` drains, `-Q reminders` sends reminders.

Celery's convention (`proj/celery.py`) lets `celery -A worker` find `app` here without
`worker/__init__.py` importing Celery, so the intake stays light.
"""

from __future__ import annotations

from celery import Celery

from worker.integrity.schedule import BEAT_SCHEDULE as INTEGRITY_BEAT
from worker.keys import INGEST_QUEUE, REMINDERS_QUEUE
from worker.settings import Settings

settings = Settings.from_env()

app = Celery("worker", broker=settings.broker_url)
app.conf.update(
    task_default_queue=INGEST_QUEUE,
    task_queues=None,
    task_create_missing_queues=True,
    task_routes={"reminders.*": {"queue": REMINDERS_QUEUE}},
    # Each worker consumes its own direct queue: drain slices are chained through it.
    worker_direct=True,
    # A drain slice whose process dies is redelivered, not acknowledged (the chain survives).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # --autoscale sizes the pool by drain slots, not by requests (a slot's hand-over has two).
    worker_autoscaler="worker.autoscale:SlotAwareAutoscaler",
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    imports=("worker.tasks", "worker.reminders.tasks", "worker.integrity.tasks"),
    beat_schedule={
        # A run missed while no reminders worker was up expires instead of piling up.
        "reminders.send_due": {
            "task": "reminders.send_due",
            "schedule": settings.reminder_every,
            "options": {"expires": settings.reminder_every},
        },
        **INTEGRITY_BEAT,  # hourly suspicious-share report, nightly reconciliation
    },
)

from worker import watchdog  # noqa: E402  (registers the worker bootstep on `app`)

watchdog.install(app, settings)

from worker import metrics_server  # noqa: E402  (issue 7: worker /metrics and structured logs)

metrics_server.install(settings)
