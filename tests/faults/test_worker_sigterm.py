"""Fault 2: a worker is stopped gracefully (SIGTERM, Celery's warm shutdown) during a backlog.

Its drain slices run to their deadline (`DRAIN_SLICE_SECONDS`, which bounds the shutdown):
the batch in hand, even one caught mid-transaction, commits and is acknowledged, and then they
stop; whatever they had not taken stays unread for the next worker. Nothing is half done: at the moment
it has exited, what PostgreSQL holds is exactly what the streams have acknowledged.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Worker,
    assert_invariant,
    consumers_pending,
    fault_settings,
    lock_waiters,
    petition_row_locked,
    queued,
    stop_all,
    stored_receipts,
    unfinished_receipts,
    wait_drained,
)
from tests.helpers import read_invariant, wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


def test_a_worker_stopped_with_sigterm_mid_backlog_leaves_nothing_half_done(
    settings: Settings, make_petition: PetitionFactory, rt: Runtime, db: DB, database_url: str
) -> None:
    s = fault_settings(settings, batch_size=50)
    petition = make_petition()
    load = queued(s, petition.id, 800)
    first = Worker(s, "g", concurrency=2)
    second = None
    try:
        with petition_row_locked(database_url, petition.id):
            # Given a worker in a heavy backlog, both its processes in the middle of a batch
            # (inserted, not yet committed: they wait for the petition's row)
            wait_for(lambda: lock_waiters(db) == 2, timeout=40)
            held = sum(consumers_pending(rt).values())
            # When it is asked to stop, and has begun its warm shutdown
            first.terminate()
            wait_for(lambda: "Warm shutdown" in first.output(), timeout=20)
            # (a slice keeps draining until its deadline; hold the batches past it, so that
            # what commits is exactly the batches that were in hand when the signal came)
            time.sleep(s.drain_slice_seconds)
        try:
            first.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the warm shutdown did not finish in 30 s")
        # Then the batches in hand were committed and acknowledged, and nothing else was touched
        signed, rejected = stored_receipts(db)
        unfinished = unfinished_receipts(rt)
        assert len(signed) == held and not rejected
        assert set(signed) == set(load.receipts) - unfinished
        assert sum(consumers_pending(rt).values()) == 0
        assert read_invariant(db).counts_match
        # And the next worker finishes the rest
        second = Worker(s, "g", concurrency=2)
        wait_drained(db, rt, load.receipts)
    finally:
        logs = stop_all(first, second)
    assert_invariant(db, rt, load.receipts, logs)
