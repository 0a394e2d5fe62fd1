"""Fault 1: a worker process is SIGKILLed while it holds a batch.

Its entries stay pending under its consumer name; another consumer takes them over after
`CLAIM_IDLE_MS` (XCLAIM) and processes them once: the store's unique receipts make the second
pass change nothing if the first one had committed.
"""

from __future__ import annotations

import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    PrivateRedis,
    Worker,
    assert_invariant,
    children,
    consumer_name,
    consumers_pending,
    fault_settings,
    lock_waiters,
    petition_row_locked,
    queued,
    sigkill,
    stop_all,
    stored_receipts,
    wait_drained,
)
from tests.helpers import wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


def inserted_but_uncommitted(db: DB) -> bool:
    """A backend of this database waits for a lock while holding a write lock on `signatures`:
    it has inserted its rows and not committed them."""
    row = db.execute(
        """SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
           JOIN pg_class c ON c.oid = l.relation
           WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'
             AND c.relname = 'signatures' AND l.mode = 'RowExclusiveLock' AND l.granted"""
    ).fetchone()
    return bool(row and row[0])


def test_a_worker_killed_after_insert_before_commit_has_its_batch_claimed_and_stored_once(
    settings: Settings, make_petition: PetitionFactory, rt: Runtime, db: DB, database_url: str
) -> None:
    s = fault_settings(settings)
    petition = make_petition()
    load = queued(s, petition.id, 300)
    first = second = None
    try:
        with petition_row_locked(database_url, petition.id):
            # Given a worker whose only pool process has inserted a batch and waits to count it
            first = Worker(s, "k", concurrency=1)
            wait_for(lambda: inserted_but_uncommitted(db), timeout=40)
            (victim,) = children(first.pid)
            held = consumers_pending(rt).get(consumer_name(victim), 0)
            assert held > 0
            assert stored_receipts(db) == ([], [])
            # When that process is killed before it commits
            sigkill(victim)
            wait_for(lambda: victim not in children(first.pid), timeout=10)
        # Then another worker (and the first one's new pool process) take its entries over
        second = Worker(s, "k", concurrency=1)
        wait_drained(db, rt, load.receipts)
        assert consumers_pending(rt).get(consumer_name(victim), 0) == 0
    finally:
        out = stop_all(first, second)
    assert_invariant(db, rt, load.receipts, out)
    assert lock_waiters(db) == 0


def test_a_worker_killed_after_commit_before_xack_is_not_counted_twice(
    private_redis: PrivateRedis,
    settings: Settings,
    make_petition: PetitionFactory,
    rt: Runtime,
    db: DB,
    database_url: str,
) -> None:
    assert settings.redis_url == private_redis.url  # CLIENT PAUSE must never reach the shared Redis
    s = fault_settings(settings)
    petition = make_petition()
    load = queued(s, petition.id, 300)
    first = second = None
    try:
        with petition_row_locked(database_url, petition.id):
            first = Worker(s, "k", concurrency=1)
            wait_for(lambda: inserted_but_uncommitted(db), timeout=40)
            (victim,) = children(first.pid)
            held = consumers_pending(rt)[consumer_name(victim)]
            # Given Redis refuses writes for a while: the batch will commit but its XACK will hang
            rt.redis.client_pause(20_000, all=False)
        # (the lock is released: the batch commits)
        wait_for(lambda: len(stored_receipts(db)[0]) == held, timeout=10)
        assert consumers_pending(rt)[consumer_name(victim)] == held, "XACK went through"
        # When the process is killed between its commit and its XACK
        sigkill(victim)
        wait_for(lambda: victim not in children(first.pid), timeout=10)
        rt.redis.client_unpause()
        assert consumers_pending(rt)[consumer_name(victim)] == held, "the dead process's XACK ran"
        # Then another consumer claims the batch, finds it stored, and counts nothing twice
        second = Worker(s, "k", concurrency=1)
        wait_drained(db, rt, load.receipts)
        assert consumers_pending(rt).get(consumer_name(victim), 0) == 0
    finally:
        try:
            rt.redis.client_unpause()
        finally:
            out = stop_all(first, second)
    assert_invariant(db, rt, load.receipts, out)
    row = db.execute("SELECT signature_count FROM petitions WHERE id = %s", [petition.id]).fetchone()
    assert row == (301,)


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    """Both tests run on a Redis of their own (the second pauses it)."""
    return private_redis.url
