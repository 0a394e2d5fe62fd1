"""The drain loop's observers: metrics, one log line and the running totals per batch.

Plugged into `Drainer(on_batch=..., on_retry=...)`; the drain loop itself knows nothing of them.
A failure here (Redis gone while publishing totals) is logged and never fails the batch, which
is already committed and acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker.drain.drainer import BatchResult
from worker.drain.streams import translated
from worker.errors import QueueUnavailable, RetryLater
from worker.keys import Keys
from worker.observability.metrics import WorkerMetrics

log = logging.getLogger("sigingest.batch")
RECENT_TTL_SECONDS = 180  # per-second buckets kept a little past the one-minute window


@dataclass(frozen=True)
class BatchCounts:
    """What one batch did, in numbers only (no personal data): the log line and the metrics."""

    entries: int
    persisted: int
    uncounted: int
    duplicate: int
    rejected: dict[str, int]
    dead_lettered: int
    retried: int
    pending: int = 0  # stored awaiting email confirmation (also in `uncounted`)
    confirmed: int = 0  # confirmed by their signers, counted now
    refused_confirmations: int = 0  # clicks for an expired, erased or unknown signature

    def outcomes(self) -> dict[str, int]:
        return {
            "persisted": self.persisted,
            "uncounted": self.uncounted,
            "duplicate": self.duplicate,
            "rejected": sum(self.rejected.values()),
            "dead_lettered": self.dead_lettered,
            "retried": self.retried,
        }


def count_batch(result: BatchResult, max_deliveries: int) -> BatchCounts:
    """Pure: the figures of a processed batch."""
    dead = sum(1 for p in result.poison if p.entry.deliveries >= max_deliveries)
    o = result.outcome
    return BatchCounts(
        entries=len(result.acked) + len(result.poison),
        persisted=sum(o.persisted.values()),
        uncounted=o.uncounted,
        duplicate=sum(o.duplicates.values()),
        rejected=dict(sorted(o.rejected.items())),
        dead_lettered=dead,
        retried=len(result.poison) - dead,
        pending=sum(o.pending.values()),
        confirmed=sum(o.confirmed.values()),
        refused_confirmations=sum(o.refused_confirmations.values()),
    )


def totals_increments(counts: BatchCounts) -> dict[str, int]:
    """Pure: the fields of the running-totals hash this batch adds to (zeros left out)."""
    fields = {
        "persisted": counts.persisted,
        "uncounted": counts.uncounted,
        "duplicate": counts.duplicate,
        "dead_lettered": counts.dead_lettered,
        "pending": counts.pending,
        "confirmed": counts.confirmed,
        "refused_confirmations": counts.refused_confirmations,
        **{f"rejected:{reason}": n for reason, n in counts.rejected.items()},
    }
    return {k: v for k, v in fields.items() if v}


class BatchObserver:
    def __init__(
        self,
        metrics: WorkerMetrics,
        client: redis.Redis,
        keys: Keys,
        max_deliveries: int,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics, self._redis, self._keys = metrics, client, keys
        self._max_deliveries = max_deliveries
        self._wall_clock = wall_clock

    def on_batch(self, result: BatchResult, seconds: float) -> None:
        counts = count_batch(result, self._max_deliveries)
        self._record_metrics(counts, seconds)
        log.info(
            "batch",
            extra={
                "data": {
                    **counts.outcomes(),
                    "entries": counts.entries,
                    "rejected_by_reason": counts.rejected,
                    "seconds": round(seconds, 4),
                }
            },
        )
        try:
            self._publish(counts, result.outcome.persisted + result.outcome.confirmed)
        except QueueUnavailable as exc:
            log.warning("could not publish running totals for a committed batch: %s", exc)

    def on_retry(self, exc: RetryLater) -> None:
        cause = "redis" if isinstance(exc, QueueUnavailable) else "database"
        if cause == "database":
            self.metrics.database_errors.inc()
        self.metrics.retries.labels(cause).inc()

    def _record_metrics(self, counts: BatchCounts, seconds: float) -> None:
        w = self.metrics
        w.batches.inc()
        w.batch_size.observe(counts.entries)
        w.batch_duration.observe(seconds)
        for outcome, n in counts.outcomes().items():
            if n:
                w.signatures.labels(outcome).inc(n)
        for reason, n in counts.rejected.items():
            w.rejected.labels(reason).inc(n)
        for event, n in (
            ("pending", counts.pending),
            ("confirmed", counts.confirmed),
            ("refused", counts.refused_confirmations),
        ):
            if n:
                w.confirmations.labels(event).inc(n)

    def _publish(self, counts: BatchCounts, persisted: Counter[int]) -> None:
        fields = totals_increments(counts)
        if not fields and not persisted:
            return
        bucket = self._keys.recent(int(self._wall_clock()))
        with translated(), self._redis.pipeline(transaction=False) as pipe:
            for field, n in fields.items():
                pipe.hincrby(self._keys.totals, field, n)
            for petition_id, n in persisted.items():
                pipe.hincrby(bucket, str(petition_id), n)
            if persisted:
                pipe.expire(bucket, RECENT_TTL_SECONDS)
            pipe.execute()
