"""Two writers whose batches hold the same people in opposite orders never deadlock (real
PostgreSQL): rows are inserted in unique-key order, so waits cannot form a cycle."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg

from tests.conftest import PetitionFactory
from worker.drain.store import SignatureStore
from worker.errors import RetryLater
from worker.pipeline.plan import BatchPlan, Row
from worker.settings import Settings

PEOPLE = 1500


def row(receipt: str, petition_id: int, person: int) -> Row:
    email = f"person{person:05d}@example.org"
    return Row(receipt, petition_id, email, email, "Ann", None, None, False, None, datetime.now(UTC))


def write(store: SignatureStore, plan: BatchPlan, start: threading.Barrier, errors: list[Exception]) -> None:
    start.wait()
    try:
        store.write(plan)
    except RetryLater as exc:
        errors.append(exc)


def test_crossing_batches_of_the_same_people_commit_without_deadlock(
    settings: Settings, make_petition: PetitionFactory, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    # Given two batches with the same people, one in ascending and one in descending order
    petition = make_petition()
    for attempt in range(3):
        people = range(attempt * PEOPLE, (attempt + 1) * PEOPLE)
        plans = [
            BatchPlan(rows=[row(f"a{attempt}-{p}", petition.id, p) for p in people]),
            BatchPlan(rows=[row(f"b{attempt}-{p}", petition.id, p) for p in reversed(people)]),
        ]
        stores = [SignatureStore(settings.libpq_url), SignatureStore(settings.libpq_url)]
        errors: list[Exception] = []
        start = threading.Barrier(2)

        # When both are written at the same moment by two connections
        threads = [
            threading.Thread(target=write, args=(store, plan, start, errors))
            for store, plan in zip(stores, plans, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for store in stores:
            store.close()
        # Then neither had to be retried, each person is stored once and the rest are duplicates
        assert errors == []
    counts = db.execute(
        "SELECT (SELECT count(*) FROM signatures WHERE receipt NOT LIKE 'starter-%%'),"
        " (SELECT count(*) FROM rejected_signatures WHERE reason = 'duplicate')"
    ).fetchone()
    assert counts == (3 * PEOPLE, 3 * PEOPLE)
