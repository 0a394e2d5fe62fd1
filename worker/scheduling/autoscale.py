"""Celery's autoscaler, counting each drain slot once.

A drain slice queues its successor just before it ends, so for a moment a slot has two requests
(the ending slice and its successor) and Celery's autoscaler, which sizes the pool by the number
of reserved requests, grows the pool by one at every hand-over and never gets back to MIN.
Counting distinct slots leaves the pool at the number of chains that actually run: MIN while the
backlog is low, MAX while extra drainers are at work (worker/scheduling/leases.py).
Installed with `worker_autoscaler` in worker/scheduling/app.py; only `--autoscale` uses it.
"""

from __future__ import annotations

from typing import Any

from celery.worker import state
from celery.worker.autoscale import Autoscaler

from worker.keys import DRAIN_TASK


class SlotAwareAutoscaler(Autoscaler):  # type: ignore[misc]
    @property
    def qty(self) -> int:
        return demand(list(state.reserved_requests))


def demand(requests: list[Any]) -> int:
    """Pool processes the reserved requests need: one per drain slot, one per other task."""
    slots = {tuple(r.args[:1]) for r in requests if r.task_name == DRAIN_TASK}
    return len(slots) + sum(1 for r in requests if r.task_name != DRAIN_TASK)
