"""A receipt already stored under another person key (its row was anonymized since, or a
producer reused the receipt) is skipped like any redelivery, not refused (real PostgreSQL)."""

from __future__ import annotations

import psycopg

from tests.conftest import PetitionFactory
from tests.helpers import signature_row
from worker.drain.store import SignatureStore
from worker.pipeline.plan import BatchPlan
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]


def count(db: DB, sql: str) -> int:
    found = db.execute(sql).fetchone()
    assert found is not None
    return int(found[0])  # type: ignore[call-overload]


def test_a_stored_receipt_under_another_person_key_is_skipped_and_the_rest_is_written(
    settings: Settings, make_petition: PetitionFactory, db: DB
) -> None:
    # Given a stored signature whose person key was rewritten afterwards (as `anonymize` does)
    petition = make_petition()
    store = SignatureStore(settings.libpq_url)
    store.write(BatchPlan(rows=[signature_row("r1", petition.id, "ann@example.org")]))
    db.execute("UPDATE signatures SET canonical_email = 'anonymized@anonymized.invalid' WHERE receipt = 'r1'")

    # When its entry comes again, in a batch with a new signature and a reused receipt
    outcome = store.write(
        BatchPlan(
            rows=[
                signature_row("r1", petition.id, "ann@example.org"),
                signature_row("r2", petition.id, "bob@example.org"),
                signature_row("r1", petition.id, "carl@example.org"),
            ]
        )
    )
    store.close()

    # Then only the new one is stored and counted, and the stored receipt is not also rejected
    assert dict(outcome.persisted) == {petition.id: 1}
    assert count(db, "SELECT count(*) FROM signatures WHERE receipt IN ('r1', 'r2')") == 2
    assert count(db, "SELECT count(*) FROM rejected_signatures") == 0
    assert count(db, f"SELECT signature_count FROM petitions WHERE id = {petition.id}") == 3
