"""The petition reference of `signatures`, checked by triggers once per statement (migration 0003),
refuses what the foreign key refused, with the same SQLSTATE, and locks as it did."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import errors as pg_errors

from tests.conftest import PetitionFactory

DB = psycopg.Connection[tuple[object, ...]]
INSERT = """INSERT INTO signatures (petition_id, receipt, email, canonical_email, name, accepted_at)
SELECT p, 'r' || p || '-' || n, n || '@example.org', n || '@example.org', 'Ann', now()
FROM unnest(%s::bigint[]) AS p, generate_series(1, 3) AS n"""


def test_signatures_of_existing_petitions_are_stored(make_petition: PetitionFactory, db: DB) -> None:
    ids = [make_petition().id, make_petition().id]
    db.execute(INSERT, [ids])
    assert db.execute("SELECT count(*) FROM signatures WHERE receipt LIKE 'r%%'").fetchone() == (6,)


def test_a_statement_naming_a_missing_petition_is_refused_whole(
    make_petition: PetitionFactory, db: DB
) -> None:
    real = make_petition().id
    with pytest.raises(pg_errors.ForeignKeyViolation):
        db.execute(INSERT, [[real, real + 1000]])
    assert db.execute("SELECT count(*) FROM signatures WHERE receipt LIKE 'r%%'").fetchone() == (0,)


def test_a_signature_cannot_move_to_a_missing_petition(make_petition: PetitionFactory, db: DB) -> None:
    petition, other = make_petition().id, make_petition().id
    db.execute(INSERT, [[petition]])
    db.execute("UPDATE signatures SET petition_id = %s WHERE receipt = %s", [other, f"r{petition}-1"])
    with pytest.raises(pg_errors.ForeignKeyViolation):
        moved = [other + 1000, f"r{petition}-2"]
        db.execute("UPDATE signatures SET petition_id = %s WHERE receipt = %s", moved)


def test_a_signed_petition_cannot_be_deleted_or_renumbered(make_petition: PetitionFactory, db: DB) -> None:
    petition = make_petition().id  # has its starter's signature
    with pytest.raises(pg_errors.ForeignKeyViolation):
        db.execute("DELETE FROM petitions WHERE id = %s", [petition])
    with pytest.raises(pg_errors.ForeignKeyViolation):
        db.execute("UPDATE petitions SET id = id + 1000 WHERE id = %s", [petition])
    db.execute("DELETE FROM signatures WHERE petition_id = %s", [petition])
    db.execute("DELETE FROM petitions WHERE id = %s", [petition])  # nothing refers to it now


def test_an_insert_in_flight_keeps_its_petition_from_being_deleted(
    make_petition: PetitionFactory, db: DB, database_url: str
) -> None:
    petition = make_petition().id
    db.execute("DELETE FROM signatures WHERE petition_id = %s", [petition])
    errors: list[Exception] = []
    with psycopg.connect(database_url) as writer:
        writer.execute(INSERT, [[petition]])  # uncommitted: holds KEY SHARE on the petition

        def delete() -> None:
            with psycopg.connect(database_url, autocommit=True) as conn:
                try:
                    conn.execute("DELETE FROM petitions WHERE id = %s", [petition])
                except psycopg.Error as exc:
                    errors.append(exc)

        deleting = threading.Thread(target=delete)
        deleting.start()
        time.sleep(0.3)
        assert deleting.is_alive(), "the delete waits for the insert's transaction"
        writer.commit()
        deleting.join(10)
    assert len(errors) == 1 and isinstance(errors[0], pg_errors.ForeignKeyViolation)
