"""A bootstep in every ingest worker's main process: sync the registry, kick one drain task per
pool slot, and re-kick any slot whose lease expired. Under `--autoscale=MAX,MIN` it keeps MIN
slots always draining and starts the extra ones only while the backlog is high (worker/scheduling/leases.py).

Workers that do not consume the `ingest` queue (for example `-Q reminders`) do none of this.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps, signals
from celery.utils import worker_direct

from worker.drain.petitions import sync_registry
from worker.keys import INGEST_QUEUE
from worker.runtime import runtime
from worker.scheduling.drains import backlog_is_high, lease_ttl_ms, send_drain
from worker.scheduling.leases import DrainerLeases
from worker.settings import Settings

log = logging.getLogger("sigingest.watchdog")
CHECK_SECONDS = 5.0


def install(app: Celery, settings: Settings) -> None:
    class DrainWatchdog(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = frozenset({"celery.worker.consumer.tasks:Tasks"})

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.timer_ref: Any = None
            self.registry_synced = False

        def start(self, consumer: Any) -> None:
            queues = {q.name for q in consumer.task_consumer.queues} if consumer.task_consumer else set()
            if INGEST_QUEUE not in queues:
                return
            controller = consumer.controller
            most = int(controller.max_concurrency or controller.concurrency)
            base = min(most, int(controller.min_concurrency or most))  # below --autoscale's MIN
            slots, extras = range(base), range(base, most)
            self._check(consumer.hostname, slots, extras, force=True)
            self.timer_ref = consumer.timer.call_repeatedly(
                CHECK_SECONDS, self._check, (consumer.hostname, slots, extras), priority=10
            )

        def stop(self, consumer: Any) -> None:
            if self.timer_ref is not None:
                self.timer_ref.cancel()
                self.timer_ref = None

        def _check(self, hostname: str, slots: range, extras: range, force: bool = False) -> None:
            rt = runtime(settings)
            try:
                if not self.registry_synced:
                    count = sync_registry(rt.engine, rt.registry)
                    self.registry_synced = True
                    log.info("registry synced: %d petitions", count)
            except Exception as exc:  # PostgreSQL down at start: try again next tick
                log.warning("registry sync failed, retrying in %.0fs: %s", CHECK_SECONDS, type(exc).__name__)
            leases = DrainerLeases(rt.redis, rt.keys, hostname, lease_ttl_ms(settings))
            try:
                for slot in slots if force else leases.vacant(slots):
                    send_drain(app, hostname, slot, leases)
                    if not force:
                        log.warning("re-kicked drainer slot %d (its lease had expired)", slot)
                vacant_extras = leases.vacant(extras) if extras else []
                if vacant_extras and backlog_is_high(settings):
                    for slot in vacant_extras:
                        send_drain(app, hostname, slot, leases, extra=True)
                    log.info("backlog is high: started %d extra drainers", len(vacant_extras))
            except Exception as exc:  # broker or Redis down: next tick
                log.warning("cannot kick drainers yet: %s", exc)

    app.steps["consumer"].add(DrainWatchdog)

    @signals.worker_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
    def drop_direct_queue(sender: Any, **kwargs: Any) -> None:
        """After the pool has stopped, delete this worker's direct queue: the successors its last
        slices queued would otherwise stay in Redis for good when the host name never comes back
        (a pod). A worker restarting under the same name kicks every slot afresh anyway."""
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
                queue = worker_direct(sender.hostname)(conn.default_channel)
                queue.declare()  # binds it, so the channel knows which binding to remove
                queue.delete()
        except Exception as exc:  # broker down at shutdown: the queue stays, harmless
            log.warning("could not delete this worker's direct queue: %s", type(exc).__name__)
