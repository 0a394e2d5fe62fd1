"""Fault 7: the same entries are delivered to two workers at once: a second worker claims them
(they look stale after `CLAIM_IDLE_MS`) while the first is still inside its transaction.

Both write the same receipts; the unique receipt makes the second insert wait for the first
transaction and then find the rows there, so each signature is stored and counted once.
"""

from __future__ import annotations

import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Worker,
    assert_invariant,
    children,
    consumer_name,
    consumers_pending,
    fault_settings,
    lock_waiters,
    petition_row_locked,
    queued,
    stop_all,
    stored_receipts,
    wait_drained,
)
from tests.helpers import wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


def test_an_entry_claimed_by_a_second_worker_while_the_first_still_works_is_stored_once(
    settings: Settings, make_petition: PetitionFactory, rt: Runtime, db: DB, database_url: str
) -> None:
    s = fault_settings(settings, batch_size=200)
    petition = make_petition()
    load = queued(s, petition.id, 60)
    first = second = None
    try:
        with petition_row_locked(database_url, petition.id):
            # Given a worker holding a batch, stuck inside its transaction
            first = Worker(s, "d", concurrency=1)
            wait_for(lambda: lock_waiters(db) == 1, timeout=40)
            (one,) = children(first.pid)
            held = consumers_pending(rt)[consumer_name(one)]
            assert held > 0
            # When a second worker claims the same entries and writes them too
            second = Worker(s, "d", concurrency=1)
            wait_for(lambda: lock_waiters(db) == 2, timeout=40)
            (two,) = children(second.pid)
            pending = consumers_pending(rt)
            assert pending.get(consumer_name(two)) == held and not pending.get(consumer_name(one))
            assert stored_receipts(db) == ([], [])
        # Then, once the lock goes, both finish and every signature is there once
        wait_drained(db, rt, load.receipts)
    finally:
        logs = stop_all(first, second)
    assert_invariant(db, rt, load.receipts, logs)
    row = db.execute("SELECT signature_count, duplicate_count FROM petitions WHERE id = %s", [petition.id])
    assert row.fetchone() == (61, 0)
