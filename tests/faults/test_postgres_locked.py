"""Fault 4: PostgreSQL is slow or locked: a long transaction holds a lock on the viral
petition's row and on `signatures`, so every batch for it waits.

The intake never waits for PostgreSQL, so its latency and rate do not change. Measured in the
same test, in alternating rounds so that noise from the machine falls on both sides.
"""

from __future__ import annotations

import statistics

import psycopg
import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Load,
    Worker,
    assert_invariant,
    fault_settings,
    intake,
    lock_waiters,
    p99,
    stored_receipts,
    wait_drained,
)
from tests.helpers import wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow
ROUNDS, PER_ROUND = 3, 150


def test_a_long_lock_on_the_viral_petition_does_not_slow_the_intake(
    settings: Settings, make_petition: PetitionFactory, rt: Runtime, db: DB, database_url: str
) -> None:
    s = fault_settings(settings)
    viral = make_petition(title="Viral")
    worker = Worker(s, "l", concurrency=2)
    free, locked, everything = Load(), Load(), Load()
    try:
        with intake(s) as client:
            everything.many(client, viral.id, 50)  # warm up the intake and the workers
            wait_drained(db, rt, everything.receipts)
            for round_ in range(ROUNDS):
                free.many(client, viral.id, PER_ROUND, tag=f"f{round_}")
                with psycopg.connect(database_url) as holder:
                    # the table first: taken after the row, it would wait for a batch that
                    # waits for the row (a deadlock PostgreSQL would break by failing one)
                    holder.execute("LOCK TABLE signatures IN EXCLUSIVE MODE")
                    holder.execute("SELECT id FROM petitions WHERE id = %s FOR UPDATE", [viral.id])
                    stored = len(stored_receipts(db)[0])
                    locked.many(client, viral.id, PER_ROUND, tag=f"l{round_}")
                    # the workers really were stuck behind the lock the whole time
                    wait_for(lambda: lock_waiters(db) >= 1, timeout=10)
                    assert len(stored_receipts(db)[0]) == stored
                    holder.rollback()
        free_p99, locked_p99 = p99(free.latencies), p99(locked.latencies)
        free_rate = len(free.latencies) / sum(free.latencies)
        locked_rate = len(locked.latencies) / sum(locked.latencies)
        receipts = everything.receipts + free.receipts + locked.receipts
        wait_drained(db, rt, receipts)
    finally:
        logs = [worker.stop()]
    assert_invariant(db, rt, receipts, logs)
    assert not any("40P01" in log for log in logs)
    figures = f"p99 {locked_p99 * 1000:.1f} ms locked, {free_p99 * 1000:.1f} ms free"
    assert locked_p99 < 2.0 * free_p99, figures
    assert locked_rate > 0.5 * free_rate
    assert statistics.median(locked.latencies) < 2.0 * statistics.median(free.latencies)
