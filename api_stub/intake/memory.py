"""Keep Redis below its `maxmemory`, so the workers can always drain their way out.

Past `maxmemory` (`noeviction`) Redis refuses every write that may grow memory, and the
workers need a few such writes to drain (Celery's broker lives in the same Redis: its locks and
unacked-message bookkeeping are plain writes). So the intake stops accepting, with 503
`backlog_full`, once Redis uses more than `1 - headroom` of its `maxmemory`: the rest is the
workers' room. Draining then frees memory (acknowledged entries are trimmed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aioredis


class MemoryGuard:
    """Says whether Redis is too full to accept more, from `INFO memory` read at most once per
    `interval` seconds (concurrent callers share one read). Without a `maxmemory` it never is."""

    def __init__(
        self,
        client: aioredis.Redis,
        headroom: float,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis, self._headroom, self._interval, self._clock = client, headroom, interval, clock
        self._checked = -float("inf")
        self._full = False
        self._reading: asyncio.Task[None] | None = None

    async def full(self) -> bool:
        if self._headroom > 0 and self._clock() - self._checked >= self._interval:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read())
            reading = self._reading
            await asyncio.shield(reading)
        return self._full

    async def _read(self) -> None:
        try:
            info = await self._redis.info("memory")
            limit = int(info.get("maxmemory", 0))
            self._full = limit > 0 and int(info["used_memory"]) > limit * (1 - self._headroom)
            self._checked = self._clock()
        finally:
            self._reading = None
