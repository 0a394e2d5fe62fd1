"""Fault 8: four worker processes drain a spike on one viral petition at the same time.

Every batch adds `+n` to the same row; concurrent batches queue on its row lock (taken last, in
petition-id order) instead of deadlocking, and the same person signing twice in batches handled
by different workers at once is stored once and counted once.
"""

from __future__ import annotations

import pytest
import redis

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Load,
    Worker,
    assert_invariant,
    consumers_pending,
    fault_settings,
    intake,
    petition_row_locked,
    stop_all,
    wait_drained,
)
from tests.helpers import wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow
PEOPLE = 1000


def variant(n: int) -> str:
    """The same person typed another way (case, +tag): a different shard, the same signer."""
    return f"Person{n}+again@Example.ORG"


def holding_a_batch(rt: Runtime) -> int:
    """Consumers with entries pending (0 until the workers have created the consumer group)."""
    try:
        return sum(1 for n in consumers_pending(rt).values() if n)
    except redis.ResponseError:
        return 0


def test_four_workers_on_one_viral_petition_neither_deadlock_nor_lose_a_count(
    settings: Settings, make_petition: PetitionFactory, rt: Runtime, db: DB, database_url: str
) -> None:
    s = fault_settings(settings, batch_size=40)
    viral = make_petition(title="Viral")
    load = Load()
    with intake(s) as client:
        for n in range(PEOPLE):
            assert load.post(client, viral.id, f"person{n}@example.org") == 202
            if n % 5 == 0:
                assert load.post(client, viral.id, variant(n)) == 202
    # Two workers of two pool processes each: four drainers race over one petition's row. The
    # row is held until all four hold a batch each (on a fast machine the first worker to start
    # could otherwise drain the whole spike alone), then released to let them race.
    workers = [Worker(s, "v", concurrency=2) for _ in range(2)]
    try:
        with petition_row_locked(database_url, viral.id):
            wait_for(lambda: holding_a_batch(rt) == 4, timeout=60)
        wait_drained(db, rt, load.receipts, timeout=50)
    finally:
        logs = stop_all(*workers)
    assert_invariant(db, rt, load.receipts, logs)
    assert len(consumers_pending(rt)) == 4
    row = db.execute("SELECT signature_count, duplicate_count FROM petitions WHERE id = %s", [viral.id])
    assert row.fetchone() == (PEOPLE + 1, PEOPLE // 5)
    deadlocks = db.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    assert deadlocks.fetchone() == (0,)
    assert not any("Deadlock" in log or "40P01" in log for log in logs)
