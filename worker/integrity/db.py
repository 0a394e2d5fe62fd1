"""The connection operator commands use, and how they publish the counts they change."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]
# Publishes committed-to-be counts to the live registry (`Registry.set_counts`). Called inside
# the transaction that changed them, while their petition rows are locked: a batch that commits
# later waits for that lock, and its own publication, with a higher count, comes after ours.
Publish = Callable[[Mapping[int, int]], None]

# Same statement, same order as the batch writer (worker/store.py): no lock-order deadlocks.
LOCK_PETITIONS = "SELECT id FROM petitions WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"


def connect(dsn: str) -> Conn:
    """An autocommit connection; each command opens its own transactions."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


def no_publish(counts: Mapping[int, int]) -> None:
    """For callers without a registry (dry runs, tests of the database side alone)."""


def num(value: object) -> int:
    """An integer column's value (PostgreSQL bigint and count(*) arrive as `int`)."""
    if not isinstance(value, int):
        raise TypeError(f"expected an integer from PostgreSQL, got {type(value).__name__}")
    return value


def scalar(conn: Conn, sql: str, params: Sequence[object] | Mapping[str, object] | None = None) -> int:
    row = conn.execute(sql, params).fetchone()
    return num(row[0]) if row and row[0] is not None else 0
