"""Celery tasks. `ingest.drain` drains the streams for one time slice and chains itself."""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from celery import signals

from worker.errors import QueueUnavailable
from worker.keys import DRAIN_TASK
from worker.runtime import runtime
from worker.scheduling.app import app, settings
from worker.scheduling.drains import backlog_is_high, lease_ttl_ms, send_drain
from worker.scheduling.leases import DrainerLeases

log = logging.getLogger("sigingest.drain")


@signals.worker_process_init.connect(weak=False)  # type: ignore[untyped-decorator]
def settle_collector(**_: Any) -> None:
    """In each pool process: leave what is loaded by now out of Python's cyclic collections for
    good (`gc.freeze`), and collect less often: a batch makes and drops some ten thousand
    objects, nearly none in cycles (the cost measured: BENCHMARKS.md, "Profile, round 3")."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


@app.task(name=DRAIN_TASK, bind=True)  # type: ignore[untyped-decorator]
def drain(self: Any, slot: int, extra: bool = False) -> int:
    """Drain for `DRAIN_SLICE_SECONDS`, then hand the slot to a successor; a task whose slot was
    given to another id (stale or duplicate) stops at once. An `extra` slot (beyond the
    autoscale minimum) ends instead once the backlog is low, so the pool can shrink."""
    hostname = self.request.hostname
    rt = runtime(settings)
    leases = DrainerLeases(rt.redis, rt.keys, hostname, lease_ttl_ms(settings))
    if not leases.held_by(slot, self.request.id):
        return 0
    deadline = time.monotonic() + settings.drain_slice_seconds
    last_check = time.monotonic()

    def still_mine() -> bool:
        nonlocal last_check
        if time.monotonic() - last_check < 1.0:
            return True
        last_check = time.monotonic()
        try:
            return leases.held_by(slot, self.request.id)
        except QueueUnavailable:
            return True  # Redis is down: the drain loop backs off on its own

    handled = rt.drainer.run_until(deadline, keep_going=still_mine)
    if not leases.held_by(slot, self.request.id):
        return handled
    if extra and not backlog_is_high(settings):
        leases.release(slot, self.request.id)
        log.info("extra drainer slot %d ends: the backlog is low", slot)
    else:
        _send_successor(hostname, slot, leases, extra)
    return handled


def _send_successor(hostname: str, slot: int, leases: DrainerLeases, extra: bool) -> None:
    """Chain the next slice. While the broker is down, try for about 10 s, then leave the slot
    to the watchdog, which re-kicks it once the lease expires: the pool process is freed, and a
    warm shutdown is never held up here."""
    for attempt in range(6):
        try:
            send_drain(app, hostname, slot, leases, extra)
            return
        except Exception as exc:  # broker errors come in many types; all of them mean "try again"
            log.warning("cannot queue the next drain slice for slot %d yet: %s", slot, type(exc).__name__)
            time.sleep(min(5.0, 0.2 * 2**attempt))
