"""The batch observer's pure parts: counting a batch, and retries by cause."""

from __future__ import annotations

from collections import Counter

import redis

from worker.drain.drainer import BatchResult
from worker.drain.store import BatchOutcome
from worker.errors import QueueUnavailable, RetryLater
from worker.keys import Keys
from worker.observability.batches import BatchObserver, count_batch, totals_increments
from worker.observability.metrics import WORKER_DATABASE_ERRORS, WORKER_RETRIES, WorkerMetrics
from worker.pipeline.entry import Entry
from worker.pipeline.plan import Poison


def entry(n: int, deliveries: int = 1) -> Entry:
    return Entry(0, f"1-{n}", b"{}", deliveries)


def test_a_batch_is_counted_by_outcome_with_poison_split_into_dead_lettered_and_retried() -> None:
    outcome = BatchOutcome(
        persisted=Counter({1: 3, 2: 1}), duplicates=Counter({1: 2}), rejected=Counter({"invalid_email": 1})
    )
    result = BatchResult(
        outcome,
        [entry(n) for n in range(7)],
        [Poison(entry(8, deliveries=3), "bad"), Poison(entry(9, deliveries=1), "bad")],
    )
    counts = count_batch(result, max_deliveries=3)
    assert counts.entries == 9
    assert counts.outcomes() == {
        "persisted": 4,
        "uncounted": 0,
        "duplicate": 2,
        "rejected": 1,
        "dead_lettered": 1,
        "retried": 1,
    }
    assert totals_increments(counts) == {
        "persisted": 4,
        "duplicate": 2,
        "dead_lettered": 1,
        "rejected:invalid_email": 1,
    }


def test_retries_are_counted_by_cause_and_database_failures_as_database_errors() -> None:
    metrics = WorkerMetrics()
    observer = BatchObserver(metrics, redis.Redis(), Keys(), max_deliveries=3)
    observer.on_retry(RetryLater("PostgreSQL unavailable: OperationalError"))
    observer.on_retry(QueueUnavailable("Connection refused"))
    observer.on_retry(RetryLater("PostgreSQL: 40P01"))
    r = metrics.registry
    assert r.get_sample_value(WORKER_RETRIES, {"cause": "database"}) == 2
    assert r.get_sample_value(WORKER_RETRIES, {"cause": "redis"}) == 1
    assert r.get_sample_value(WORKER_DATABASE_ERRORS) == 2
