"""Reconciliation: compare each petition's `signature_count` with `COUNT(*)` of its validated
signatures, report every mismatch and, asked to, repair it.

Why the repair is safe while batches are being written (READ COMMITTED): the batch writer
inserts its rows (the petition-reference trigger, migration 0003, takes a KEY SHARE lock on
their petition's row at the end of the insert, as a foreign key would), then locks
its petitions `FOR NO KEY UPDATE` in id order, adds `+n`, and commits rows and counts together.
The repair locks the petition row `FOR UPDATE`, which conflicts with both locks, then counts in
a new statement (so a new snapshot), then sets the count, in one transaction. So a batch already
writing to the petition commits first and the count sees its rows; a batch that comes later
waits at its first insert for the petition until the repair commits, then adds `+n` to the
repaired value. Each row is counted once (`tests/worker/integrity/test_reconcile.py` checks both
orders, and a repair during a spike drained by real worker processes). Finding drift needs no
lock: one statement sees one snapshot, where a batch's rows and count appear together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker.integrity.db import Conn, Publish, no_publish, num

log = logging.getLogger("sigingest.reconcile")

FIND_DRIFT = """
SELECT p.id, p.signature_count, coalesce(c.n, 0)
FROM petitions p
LEFT JOIN (SELECT petition_id, count(*) AS n FROM signatures WHERE state = 'validated'
           GROUP BY petition_id) c ON c.petition_id = p.id
WHERE p.signature_count <> coalesce(c.n, 0)
ORDER BY p.id
"""
LOCK_FOR_REPAIR = "SELECT signature_count FROM petitions WHERE id = %s FOR UPDATE"
COUNT_VALID = "SELECT count(*) FROM signatures WHERE petition_id = %s AND state = 'validated'"
SET_COUNT = "UPDATE petitions SET signature_count = %s WHERE id = %s"


@dataclass(frozen=True)
class Drift:
    """A petition whose recorded count differed from its validated signatures."""

    petition_id: int
    recorded: int
    actual: int
    fixed: bool = False

    @property
    def difference(self) -> int:
        return self.recorded - self.actual


def find_drift(conn: Conn) -> list[Drift]:
    """Every petition whose count is not its number of validated signatures, from one snapshot."""
    return [Drift(num(i), num(r), num(a)) for i, r, a in conn.execute(FIND_DRIFT)]


def repair(conn: Conn, petition_id: int, publish: Publish = no_publish) -> Drift:
    """Set one petition's count to its validated signatures under the row lock (see module doc)."""
    with conn.transaction():
        locked = conn.execute(LOCK_FOR_REPAIR, [petition_id]).fetchone()
        if locked is None:
            raise LookupError(f"no petition {petition_id}")
        recorded = num(locked[0])
        actual_row = conn.execute(COUNT_VALID, [petition_id]).fetchone()
        actual = num(actual_row[0]) if actual_row else 0
        if recorded != actual:
            conn.execute(SET_COUNT, [actual, petition_id])
            publish({petition_id: actual})
    return Drift(petition_id, recorded, actual, fixed=recorded != actual)


def reconcile(conn: Conn, *, fix: bool, publish: Publish = no_publish) -> list[Drift]:
    """Report every mismatch (logged by petition id and sizes only); with `fix`, repair each.

    A repaired drift is re-measured under the lock, so what is returned is what was set."""
    drifts = find_drift(conn)
    if fix:
        drifts = [repair(conn, d.petition_id, publish) for d in drifts]
    for d in drifts:
        log.warning(
            "count drift on petition %d: recorded %d, validated signatures %d (%+d)%s",
            d.petition_id,
            d.recorded,
            d.actual,
            d.difference,
            ", repaired" if d.fixed else "",
        )
    return drifts
