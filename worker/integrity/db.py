"""The connection operator commands use, and how they publish the counts they change."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]
# Publishes counts to the live registry as they are (`Registry.set_counts`). Operator actions
# call it inside the transaction that changed them, while their petition rows are locked, so a
# batch that commits later publishes after them. A batch that committed just *before* may still
# publish its older, higher count after ours (the drainer publishes after XACK): `settle`
# publishes again once such stragglers have landed.
Publish = Callable[[Mapping[int, int]], None]

# Same statement, same order as the batch writer (worker/drain/store.py): no lock-order deadlocks.
LOCK_PETITIONS = "SELECT id FROM petitions WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"


def settle(
    conn: Conn,
    petition_ids: Iterable[int],
    publish: Publish,
    grace_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """After an operator action lowered counts: wait `grace_seconds` for batches committed before
    it to publish their (stale, higher) counts, then publish the counts read under the rows'
    locks. Later publications by batches only ever raise from there, with true counts."""
    ids = sorted(set(petition_ids))
    if not ids:
        return
    sleep(grace_seconds)
    with conn.transaction():
        conn.execute(LOCK_PETITIONS, [ids])
        rows = conn.execute("SELECT id, signature_count FROM petitions WHERE id = ANY(%s)", [ids])
        publish({num(i): num(c) for i, c in rows})


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
