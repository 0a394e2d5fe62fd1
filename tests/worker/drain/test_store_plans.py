"""A batch costs PostgreSQL in proportion to the batch, not to the tables (real PostgreSQL).

Both inserts look for a receipt in the other table. Planned as a hash anti join, that look-up
read the whole other table on every batch, so the drain slowed down as the tables grew and a
steady load of small batches fell further and further behind (BENCHMARKS.md, "Freshness")."""

from __future__ import annotations

import orjson
import psycopg

from tests.conftest import PetitionFactory
from tests.helpers import signature_row
from worker.drain.store import INSERT_REJECTS, INSERT_SIGNATURES, ON_ANY_CONFLICT, STAGING, SignatureStore
from worker.pipeline.plan import BatchPlan, Reject
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]
TABLE_ROWS = 30_000
STATES = {False: "validated", True: "fraudulent"}


def fill_tables(db: DB, petition_id: int) -> None:
    """Many stored signatures and many recorded rejects, then fresh planner statistics."""
    db.execute(
        "INSERT INTO signatures (receipt, petition_id, email, canonical_email, name, opt_in, accepted_at)"
        " SELECT 'old-' || i, %s, 'p' || i || '@example.org', 'p' || i || '@example.org', 'P',"
        " false, now() FROM generate_series(1, %s) i",
        (petition_id, TABLE_ROWS),
    )
    db.execute(
        "INSERT INTO rejected_signatures (receipt, petition_id, reason, accepted_at)"
        " SELECT 'gone-' || i, %s, 'duplicate', now() FROM generate_series(1, %s) i",
        (petition_id, TABLE_ROWS),
    )
    db.execute("ANALYZE signatures")
    db.execute("ANALYZE rejected_signatures")


def plan_of(db: DB, statement: str, params: list[object] | None = None) -> str:
    return "\n".join(str(line) for (line,) in db.execute("EXPLAIN " + statement, params).fetchall())


def test_the_inserts_look_receipts_up_by_index_in_large_tables(
    settings: Settings, make_petition: PetitionFactory, db: DB
) -> None:
    # Given large signature and reject tables
    petition = make_petition()
    fill_tables(db, petition.id)

    # When a small batch is staged and both inserts are planned
    with db.transaction(force_rollback=True):
        db.execute(STAGING)
        for i in range(150):
            db.execute(
                "INSERT INTO sig_staging (receipt, petition_id, email, canonical_email, name, opt_in,"
                " accepted_at, state) VALUES (%s, %s, %s, %s, 'N', false, now(), %s)",
                (f"new-{i}", petition.id, f"n{i}@example.org", f"n{i}@example.org", STATES[i % 10 == 0]),
            )
        plans = [plan_of(db, INSERT_SIGNATURES), plan_of(db, ON_ANY_CONFLICT)]
    rejects = [Reject(f"new-{i}", petition.id, "duplicate", None, None) for i in range(20)]
    plans.append(plan_of(db, INSERT_REJECTS, [orjson.dumps(rejects).decode()]))

    # Then every look-up goes through the other table's receipt index, none reads it whole; an
    # uncounted row looks for the person's counted row in the person's index
    for plan in plans[:2]:
        assert "Seq Scan on rejected_signatures" not in plan, plan
        assert "rejected_signatures_receipt_key on rejected_signatures" in plan, plan
        assert "Seq Scan on signatures" not in plan, plan
        assert "signatures_one_counted_per_person on signatures" in plan, plan
    assert "Seq Scan on signatures" not in plans[2], plans[2]
    assert "signatures_receipt_key on signatures" in plans[2], plans[2]


def test_the_inserts_are_planned_for_each_batch_not_kept_from_the_first(
    settings: Settings, make_petition: PetitionFactory, db: DB
) -> None:
    # Given a store that has written more batches than psycopg needs to prepare a statement
    petition = make_petition()
    store = SignatureStore(settings.libpq_url)
    for i in range(8):
        store.write(
            BatchPlan(
                rows=[
                    signature_row(f"b{i}", petition.id, f"b{i}@example.org"),
                    signature_row(f"c{i}", petition.id, f"b{i}@example.org"),
                ],
                rejects=[Reject(f"x{i}", petition.id, "invalid_email", "no @", None)],
            )
        )

    # When we look at what its connection keeps prepared (the store's own session)
    prepared = [
        str(s) for (s,) in store._connection().execute("SELECT statement FROM pg_prepared_statements")
    ]
    store.close()

    # Then neither insert is among them (the small look-ups may be), and the batches were written
    assert not any("INSERT INTO signatures" in s or "INSERT INTO rejected_signatures" in s for s in prepared)
    stored = db.execute("SELECT receipt FROM signatures WHERE receipt NOT LIKE 'starter-%' ORDER BY receipt")
    rejected = db.execute("SELECT receipt, reason FROM rejected_signatures ORDER BY receipt")
    assert [r for (r,) in stored] == [f"b{i}" for i in range(8)]
    assert rejected.fetchall() == sorted(
        [(f"c{i}", "duplicate") for i in range(8)] + [(f"x{i}", "invalid_email") for i in range(8)]
    )
