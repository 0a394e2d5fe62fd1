"""Granting drain slots and queueing drain slices, shared by the drain task and the watchdog.

Slices are sent by task name, so neither caller imports the other."""

from __future__ import annotations

import uuid

from celery import Celery
from celery.utils import worker_direct

from worker.keys import DRAIN_TASK
from worker.observability.queue_stats import queued_entries
from worker.runtime import runtime
from worker.scheduling.leases import DrainerLeases
from worker.settings import Settings


def lease_ttl_ms(settings: Settings) -> int:
    """How long a slot may go without a running or queued drain task before it is re-kicked."""
    return int(max(30.0, 4 * settings.drain_slice_seconds) * 1000)


def send_drain(app: Celery, hostname: str, slot: int, leases: DrainerLeases, extra: bool = False) -> str:
    """Grant `slot` to a new drain task and queue it on `hostname`'s direct queue."""
    task_id = uuid.uuid4().hex
    leases.grant(slot, task_id)
    app.send_task(DRAIN_TASK, args=[slot, extra], task_id=task_id, queue=worker_direct(hostname))
    return task_id


def backlog_is_high(settings: Settings) -> bool:
    """Enough queued to keep autoscaled extra drainers busy (AUTOSCALE_BACKLOG)."""
    rt = runtime(settings)
    return queued_entries(rt.redis, rt.keys) > settings.autoscale_backlog
