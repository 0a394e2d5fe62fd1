"""Fault 2: a worker is stopped gracefully (SIGTERM, Celery's warm shutdown) during a backlog.

Its drain slices finish the batch in hand, commit and acknowledge it, and stop; whatever it had
not finished stays pending or unread for the next worker. Nothing is half done: at the moment
it has exited, what PostgreSQL holds is exactly what the streams have acknowledged.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Load,
    Worker,
    assert_invariant,
    fault_settings,
    intake,
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
    settings: Settings, make_petition: PetitionFactory, rt: Runtime, db: DB
) -> None:
    # Short slices: a warm shutdown lets the running slice finish, and a long one would drain
    # the whole backlog before the worker exits.
    s = fault_settings(settings, batch_size=50, drain_slice_seconds=0.3)
    petitions = [make_petition(title=f"Backlog {n}") for n in range(2)]
    load = Load()
    with intake(s) as client:
        for petition in petitions:
            load.many(client, petition.id, 700)
    first = Worker(s, "g", concurrency=2)
    second = None
    try:
        # Given a worker in the middle of a heavy backlog
        wait_for(lambda: len(stored_receipts(db)[0]) >= 50, timeout=40, interval=0.02)
        # When it is asked to stop
        first.terminate()
        try:
            first.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the warm shutdown did not finish in 30 s")
        # Then every batch it started is either committed and acknowledged, or untouched
        signed, rejected = stored_receipts(db)
        unfinished = unfinished_receipts(rt)
        assert unfinished, "the backlog should not be finished yet; make it bigger"
        assert set(signed) | set(rejected) == set(load.receipts) - unfinished
        assert read_invariant(db).counts_match
        # And the next worker finishes the rest
        second = Worker(s, "g", concurrency=2)
        wait_drained(db, rt, load.receipts)
    finally:
        logs = stop_all(first, second)
    assert_invariant(db, rt, load.receipts, logs)
