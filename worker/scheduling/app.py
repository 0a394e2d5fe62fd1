"""The Celery app: queues, routes, the beat schedule and the drain watchdog.

`celery -A worker` finds it through `worker/celery.py`. Tasks refer to one another by name
(`worker/keys.py`), so this module imports no task module and the watchdog none either: Celery
imports the task modules named in `imports` once the app is configured.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery, signals
from celery.schedules import crontab

from worker.keys import INGEST_QUEUE, REMINDERS_QUEUE
from worker.observability import metrics_server
from worker.scheduling import watchdog
from worker.settings import InsecureSecrets, Settings

settings = Settings.from_env()

app = Celery("worker", broker=settings.broker_url)
app.conf.update(
    # Through the Sentinels, when REDIS_SENTINELS is set: kombu follows a failover itself.
    broker_transport_options=settings.broker_transport_options,
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
    worker_autoscaler="worker.scheduling.autoscale:SlotAwareAutoscaler",
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    imports=("worker.scheduling.tasks", "worker.reminders.tasks", "worker.integrity.tasks"),
    beat_schedule={
        # A run missed while no reminders worker was up expires instead of piling up.
        "reminders.send_due": {
            "task": "reminders.send_due",
            "schedule": settings.reminder_every,
            "options": {"expires": settings.reminder_every},
        },
        # Confirmation emails are owed within seconds of a batch: a short period, each run
        # queueing the next at once while it found a full batch.
        "reminders.send_confirmations": {
            "task": "reminders.send_confirmations",
            "schedule": settings.confirm_every,
            "options": {"expires": settings.confirm_every},
        },
        "report-suspicious-signatures": {
            "task": "integrity.report_suspicious",
            "schedule": crontab(minute=5),  # hourly, for the hour before
        },
        "reconcile-signature-counts": {
            "task": "integrity.reconcile_counts",
            "schedule": crontab(hour=3, minute=17),  # nightly, UTC
        },
    },
)


def refuse_without_secrets(**_: Any) -> None:
    """A worker or beat does not start with an unset, short or published secret (SystemExit:
    Celery logs and swallows a receiver's ordinary exceptions)."""
    try:
        settings.require_secrets()
    except InsecureSecrets as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


signals.celeryd_init.connect(refuse_without_secrets, weak=False)
signals.beat_init.connect(refuse_without_secrets, weak=False)
watchdog.install(app, settings)
metrics_server.install(settings)
