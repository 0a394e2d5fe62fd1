"""The intake's Redis edge: append a submission (one Lua call) and read the petition registry.

Errors from redis-py become `QueueUnavailable`, answered as 503 with `Retry-After`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from worker.errors import QueueUnavailable
from worker.keys import Keys
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.registry import PetitionCard, card_from_hash
from worker.streams import lua


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of one append: `ok` (with the receipt), `unknown`, `closed` or `full`."""

    status: str
    receipt: str | None = None


@contextmanager
def translated(on_unavailable: Callable[[], None] = lambda: None) -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as exc:
        on_unavailable()
        raise QueueUnavailable(type(exc).__name__) from None
    except redis.ResponseError as exc:
        if "OOM" in str(exc) or "MISCONF" in str(exc) or "LOADING" in str(exc):
            on_unavailable()
            raise QueueUnavailable(str(exc)[:80]) from None
        raise


class IntakeQueue:
    def __init__(self, client: aioredis.Redis, keys: Keys, *, idempotency_ttl: int, max_backlog: int) -> None:
        self._redis = client
        self._keys = keys
        self._append = client.register_script(lua("append"))
        self._ttl = idempotency_ttl
        self._shard_limit = math.ceil(max_backlog / keys.shards) if max_backlog else 0
        self.on_unavailable: Callable[[], None] = lambda: None  # issue 7: counts Redis errors

    async def append(
        self,
        petition_id: int,
        fields: SignatureFields,
        receipt: str,
        accepted_ms: int,
        ip_hash: str | None,
        *,
        honeypot: bool = False,
    ) -> Appended:
        """Check the registry and append atomically; returns the receipt (a prior one when the
        idempotency key was seen before). `honeypot` marks the entry to be stored fraudulent."""
        shard = self._keys.shard_for_email(fields.email)
        stream = self._keys.stream(shard)
        idem = (
            self._keys.idempotency(petition_id, _digest(fields.idempotency_key))
            if fields.idempotency_key
            else stream
        )
        payload = encode(receipt, petition_id, accepted_ms, ip_hash, fields, honeypot=honeypot)
        with translated(self.on_unavailable):
            reply = await self._append(
                keys=[self._keys.petition(petition_id), stream, idem, self._keys.totals],
                args=[payload, receipt, self._ttl, self._shard_limit, "1" if fields.idempotency_key else "0"],
            )
        status = reply[0].decode()
        return Appended(status, reply[1].decode() if len(reply) > 1 else None)

    async def petition(self, petition_id: int) -> PetitionCard | None:
        with translated(self.on_unavailable):
            data: Any = await self._redis.hgetall(self._keys.petition(petition_id))
        return card_from_hash(petition_id, data) if data else None

    async def ping(self) -> bool:
        with translated(self.on_unavailable):
            return bool(await self._redis.ping())


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]
