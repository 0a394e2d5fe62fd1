"""The drain loop: read a batch, plan it, write it, acknowledge it, publish the counts.

`Drainer.run_until` is what a Celery drain task runs for one time slice. Order per batch:
commit in PostgreSQL, then `XACK`, then the live count in Redis. A crash anywhere before the
`XACK` leaves the entries pending; they are claimed again (`claim_stale`) and the store's unique
receipts make the second pass change nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.drain.registry import Registry
from worker.drain.store import BatchOutcome, SignatureStore
from worker.drain.streams import SignatureStreams
from worker.errors import BatchRejected, QueueUnavailable, RetryLater
from worker.pipeline.emails import EmailChecker
from worker.pipeline.entry import Entry
from worker.pipeline.plan import Poison, Row, plan_batch

log = logging.getLogger("sigingest.drain")


@dataclass(frozen=True)
class DrainConfig:
    batch_size: int = 2000
    block_ms: int = 200
    # After a read that found a light load (no shard gave its full share), the next read waits
    # until this long after it began, so a light load is drained in fewer, larger batches.
    linger_ms: int = 50
    claim_idle_ms: int = 30_000
    claim_interval_ms: int = 5_000
    max_deliveries: int = 5
    retry_max_seconds: float = 30.0


@dataclass
class BatchResult:
    outcome: BatchOutcome
    acked: list[Entry]
    poison: list[Poison]


class Drainer:
    """Drains every shard as one named consumer. One per worker process."""

    def __init__(
        self,
        streams: SignatureStreams,
        store: SignatureStore,
        registry: Registry,
        emails: EmailChecker,
        config: DrainConfig,
        consumer: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_batch: Callable[[BatchResult, float], None] | None = None,
        on_retry: Callable[[RetryLater], None] | None = None,
        abuse: Callable[[list[Row]], list[Row]] | None = None,
    ) -> None:
        self.streams, self.store, self.registry = streams, store, registry
        self.emails, self.config, self.consumer = emails, config, consumer
        self._clock, self._sleep = clock, sleep
        self._on_batch = on_batch
        self._on_retry = on_retry
        self._abuse = abuse  # marks rows fraudulent (worker/drain/abuse.py); None: no abuse checks
        self._next_claim = 0.0
        self._groups_ready = False
        self._unfinished: list[Entry] = []  # a batch that hit RetryLater: retried first
        self._failures = 0  # consecutive RetryLater, across slices
        self._retry_at = 0.0  # no attempt before this `clock()` value
        self._next_read = 0.0  # `clock()` value before which a new read waits (linger)

    def run_until(self, deadline: float, keep_going: Callable[[], bool] = lambda: True) -> int:
        """Drain until `deadline` (a `clock()` value). Returns entries handled. Backs off while
        Redis or PostgreSQL is down; never returns with a batch half done.

        The backoff outlives the slice: failures are counted per drainer, so during a long
        outage the pause grows to `retry_max_seconds` across slices instead of starting again
        at a fraction of a second with every new drain task."""
        handled = 0
        while self._clock() < deadline and keep_going():
            wait = self._retry_at - self._clock()
            if wait > 0:
                self._sleep(min(wait, deadline - self._clock()))
                continue
            try:
                handled += self.step()
                self._failures = 0
            except RetryLater as exc:
                self._failures += 1
                if isinstance(exc, QueueUnavailable):
                    self._groups_ready = False  # Redis may have come back empty, or be another server
                if self._on_retry:
                    self._on_retry(exc)
                pause = min(self.config.retry_max_seconds, 0.25 * 2 ** min(self._failures, 10))
                log.warning("backing off %.1fs: %s", pause, exc)
                self._retry_at = self._clock() + pause * random.uniform(0.5, 1.0)
        return handled

    def step(self) -> int:
        """Handle one batch: stale entries first when a claim is due, else new ones."""
        if not self._groups_ready:
            self.streams.ensure_groups()
            self._groups_ready = True
        entries = self._unfinished
        if entries:
            self.streams.touch(self.consumer, entries)  # still ours: keep others from claiming
        elif self._clock() >= self._next_claim:
            self._next_claim = self._clock() + self.config.claim_interval_ms / 1000
            entries = self.streams.claim_stale(
                self.consumer, self.config.claim_idle_ms, self.config.batch_size
            )
        if not entries:
            entries = self._read_lingering()
        if entries:
            self._unfinished = entries
            self.process(entries)
            self._unfinished = []
        return len(entries)

    def _read_lingering(self) -> list[Entry]:
        """Read new entries. After a read that found only a light load, wait out `linger_ms`
        from its start first: a batch costs about the same CPU whatever its size, so a light load
        is better read in fewer, fuller batches (BENCHMARKS.md, "Round 4"). The first entry after
        an idle spell is read at once (the blocking read returns with it)."""
        wait = self._next_read - self._clock()
        if wait > 0:
            self._sleep(wait)
        started = self._clock()
        entries = self.streams.read(self.consumer, self.config.batch_size, self.config.block_ms)
        light = self._light(entries)
        self._next_read = started + self.config.linger_ms / 1000 if light else 0.0
        return entries

    def _light(self, entries: list[Entry]) -> bool:
        """Some entries, and no shard gave its full share: nothing was left waiting. A shard
        that did may hold more (a backlog drains unevenly across shards near its end), so its
        next read does not wait."""
        if not entries or len(entries) >= self.config.batch_size:
            return False
        share = self.streams.share(self.config.batch_size)
        return max(Counter(entry.shard for entry in entries).values()) < share

    def process(self, entries: Sequence[Entry]) -> BatchResult:
        """Write, acknowledge and publish one batch. On `RetryLater` nothing is acknowledged and
        the entries stay pending with this consumer; the caller retries later."""
        started = self._clock()
        result = self._write(list(entries))
        self.streams.ack(result.acked)
        for poison in result.poison:
            entry = poison.entry
            if entry.deliveries >= self.config.max_deliveries:
                self.streams.dead_letter(entry, poison.error)
                log.error(
                    "dead-lettered entry %s:%s after %d deliveries: %s",
                    entry.shard,
                    entry.entry_id,
                    entry.deliveries,
                    poison.error,
                )
            else:
                log.warning(
                    "entry %s:%s failed (delivery %d of %d), left pending for retry: %s",
                    entry.shard,
                    entry.entry_id,
                    entry.deliveries,
                    self.config.max_deliveries,
                    poison.error,
                )
        self.registry.raise_counts(result.outcome.counts)
        self.registry.set_awaiting(result.outcome.awaiting)
        if self._on_batch:
            self._on_batch(result, self._clock() - started)
        return result

    def _write(self, entries: list[Entry]) -> BatchResult:
        """Commit a batch; if PostgreSQL refuses its content, split it until the bad entry is
        alone, and commit the rest."""
        plan = plan_batch(entries, self.emails, self._abuse)
        plan.max_deliveries = self.config.max_deliveries
        try:
            outcome = self.store.write(plan)
            return BatchResult(outcome, plan.done_entries(outcome.waiting), plan.poison)
        except BatchRejected as exc:
            if len(entries) == 1:
                return BatchResult(BatchOutcome(), [], [Poison(entries[0], str(exc))])
        half = len(entries) // 2
        first, second = self._write(entries[:half]), self._write(entries[half:])
        first.outcome.merge(second.outcome)
        return BatchResult(first.outcome, first.acked + second.acked, first.poison + second.poison)
