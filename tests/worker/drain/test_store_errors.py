"""What the store says when PostgreSQL refuses a batch: enough to act on, no personal data."""

from __future__ import annotations

import psycopg
import pytest

from worker.drain.store import translated
from worker.errors import BatchRejected

DB = psycopg.Connection[tuple[object, ...]]


def test_a_refused_batch_names_the_error_but_not_the_values_of_the_row(db: DB) -> None:
    db.execute("CREATE TEMP TABLE refusing (email text CHECK (email NOT LIKE '%@%'))")
    with pytest.raises(BatchRejected) as refused, translated():
        db.execute("INSERT INTO refusing VALUES ('clara.long@example.org')")
    message = str(refused.value)
    assert "23514" in message and "check constraint" in message
    assert "clara" not in message and "example.org" not in message
