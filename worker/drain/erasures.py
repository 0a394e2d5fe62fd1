"""Erased people: `sigingest forget` marks a person here before erasing their rows, and the drain
stores a queued submission of a marked person as an `erased` reject, never as a signature.

A mark is a keyed hash of the canonical email (the address itself is not kept), in one sorted
set scored by when it was made; marks older than `KEEP_MS` go (a submission queued longer
than that is not expected). The drain asks once per batch, inside its transaction, under a
shared advisory lock that `forget` takes exclusively after marking (`ERASURE_LOCK`): a batch
either sees the mark or committed before `forget` erased, so it never slips between the two.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

import redis

from worker.drain.streams import translated
from worker.keys import Keys
from worker.pipeline.plan import Row

# pg_advisory_xact_lock key: shared by every drain transaction, exclusive by `forget`.
ERASURE_LOCK = 0x51_6E_E5_A5
KEEP_MS = 30 * 86_400_000


class Erasures:
    def __init__(self, client: redis.Redis, keys: Keys, secret: str) -> None:
        self._redis, self._key, self._secret = client, keys.erased, secret.encode()

    def digest(self, canonical_email: str) -> str:
        message = b"erased:" + canonical_email.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def mark(self, canonical_email: str) -> None:
        """Remember that this person is erased (and forget marks past `KEEP_MS`)."""
        now = int(time.time() * 1000)
        with translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._key, {self.digest(canonical_email): now})
            pipe.zremrangebyscore(self._key, "-inf", now - KEEP_MS)
            pipe.execute()

    def erased(self, rows: Sequence[Row]) -> set[str]:
        """Receipts of the rows whose person is marked. One call when nobody is (the usual case:
        nothing is hashed), two otherwise. Raises `QueueUnavailable`."""
        if not rows:
            return set()
        with translated():
            if not self._redis.zcard(self._key):
                return set()
            digests = [self.digest(row.canonical_email) for row in rows]
            scores: Any = self._redis.zmscore(self._key, digests)
        return {row.receipt for row, score in zip(rows, scores, strict=True) if score is not None}
