"""Drainer slot leases: exactly one drain task chain per slot of each ingest worker.

A worker with concurrency N keeps N drain tasks alive, each a chain of time slices: a slice
ends by handing its slot's lease to the id of its successor and sending that successor to the
worker's own direct queue. A watchdog in the worker's main process re-kicks any slot whose lease
expired (a lost message, a Redis restart without persistence); a task that finds its slot's lease
naming another id stops without a successor, so stale chains die out and never double up.

Under `--autoscale=MAX,MIN` slots MIN..MAX-1 are extras: the watchdog kicks them while the
backlog is above `AUTOSCALE_BACKLOG`, and an extra's chain releases its lease and ends once the
backlog falls below it, so Celery's autoscaler can shrink the pool again.
"""

from __future__ import annotations

import redis

from worker.drain.streams import lua, translated
from worker.keys import Keys, drainer_lease


class DrainerLeases:
    def __init__(self, client: redis.Redis, keys: Keys, hostname: str, ttl_ms: int) -> None:
        self._redis, self._keys, self._host, self._ttl = client, keys, hostname, ttl_ms
        self._refresh = client.register_script(lua("lease_refresh"))
        self._release = client.register_script(lua("lease_release"))

    def _key(self, slot: int) -> str:
        return drainer_lease(self._keys, self._host, slot)

    def grant(self, slot: int, task_id: str) -> None:
        """Give the slot to `task_id`, whoever had it."""
        with translated():
            self._redis.set(self._key(slot), task_id, px=self._ttl)

    def held_by(self, slot: int, task_id: str) -> bool:
        """Refresh the lease if `task_id` holds it; False once another task owns the slot."""
        with translated():
            return bool(self._refresh(keys=[self._key(slot)], args=[task_id, self._ttl]))

    def release(self, slot: int, task_id: str) -> None:
        """Leave the slot vacant, unless another task holds it by now."""
        with translated():
            self._release(keys=[self._key(slot)], args=[task_id])

    def vacant(self, slots: range) -> list[int]:
        """Slots whose lease has expired: nobody drains them."""
        with translated():
            values = self._redis.mget([self._key(slot) for slot in slots])
        return [slot for slot, value in zip(slots, values, strict=True) if value is None]
