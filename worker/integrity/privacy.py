"""Privacy: stream a petition's signatures as CSV, anonymize closed petitions, forget a person.

Nothing here logs a name or an email: only petition ids and numbers of rows.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from worker.integrity.db import LOCK_PETITIONS, Conn, Publish, no_publish, num, scalar
from worker.pipeline.emails import canonical_email

log = logging.getLogger("sigingest.privacy")

EXPORT_COLUMNS = ("name", "country", "postcode", "signed_at")
EXPORT = """
SELECT name, country, postcode, accepted_at, email, state FROM signatures
WHERE petition_id = %s AND state = ANY(%s) ORDER BY accepted_at, id
"""
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection): such
# cells are written with a leading apostrophe, which spreadsheets show as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FETCH_ROWS = 2000

ANONYMIZED_NAME = "anonymized"
# Placeholder address: per row (the per-petition uniqueness of canonical_email holds), derived
# from the row id only (nothing of the person), in the reserved `.invalid` domain (never mailed).
PLACEHOLDER_EMAIL = "'anonymized-' || s.id || '@anonymized.invalid'"
ANONYMIZE_BATCH = f"""
WITH picked AS (
    SELECT s.id FROM signatures s JOIN petitions p ON p.id = s.petition_id
    WHERE p.status <> 'open' AND p.closed_at < %(before)s
      AND s.canonical_email IS DISTINCT FROM 'anonymized-' || s.id || '@anonymized.invalid'
    ORDER BY s.id LIMIT %(batch)s FOR UPDATE OF s
)
UPDATE signatures s SET name = '{ANONYMIZED_NAME}', email = {PLACEHOLDER_EMAIL},
    canonical_email = {PLACEHOLDER_EMAIL}, postcode = NULL, ip_hash = NULL, opt_in = false
FROM picked WHERE s.id = picked.id
"""
# Erase one person: their rows go; their receipts are kept as `erased` rejects (no personal
# data), so a late redelivery of one of their entries is not stored again.
ERASE = """
WITH gone AS (
    DELETE FROM signatures WHERE canonical_email = %s RETURNING receipt, petition_id, state, accepted_at
), recorded AS (
    INSERT INTO rejected_signatures (receipt, petition_id, reason, accepted_at)
    SELECT receipt, petition_id, 'erased', accepted_at FROM gone ON CONFLICT (receipt) DO NOTHING
)
SELECT petition_id, count(*), count(*) FILTER (WHERE state = 'validated'),
       count(*) FILTER (WHERE state = 'pending')
FROM gone GROUP BY petition_id
"""
# The person's reminder history goes too (`reminder_deliveries` holds their address), and a
# petition's reminder walk that stopped at their address moves back to the address before it
# (already stored: another person's), which yields the same next page; with none before it,
# to '', and the round starts again (skipping everyone this petition already reminded).
# Their unsubscribe, if any, stays: it is what keeps them from being mailed if they sign again.
FORGET_REMINDERS = """
WITH deliveries AS (DELETE FROM reminder_deliveries WHERE canonical_email = %(email)s)
UPDATE reminder_cursors SET after = coalesce(
    (SELECT max(canonical_email) FROM signatures WHERE canonical_email < %(email)s), '')
WHERE after = %(email)s
"""
# Reminders are only sent for open petitions: a closed petition's deliveries (the addresses of
# the people it reminded) and its walk's position (an address) are history with personal data.
FORGET_CLOSED_REMINDERS = """
WITH closed AS (SELECT id FROM petitions WHERE status <> 'open' AND closed_at < %(before)s),
deliveries AS (DELETE FROM reminder_deliveries WHERE petition_id IN (SELECT id FROM closed))
DELETE FROM reminder_cursors WHERE petition_id IN (SELECT id FROM closed)
"""
SUBTRACT_COUNTS = """
UPDATE petitions p SET signature_count = p.signature_count - d.n,
    awaiting_count = greatest(p.awaiting_count - d.pending, 0)
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS d(id, n, pending) WHERE p.id = d.id
RETURNING p.id, p.signature_count, d.n
"""


class TextSink(Protocol):
    def write(self, text: str, /) -> int: ...


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_csv(
    conn: Conn, petition_id: int, out: TextSink, *, include_email: bool = False, include_pending: bool = False
) -> int:
    """Write the petition's validated signatures to `out` as CSV; return how many. Signatures
    awaiting email confirmation are left out (they are not counted) unless `include_pending`,
    which adds them and a `state` column saying which is which.

    A server-side cursor fetches `FETCH_ROWS` at a time, so memory stays flat however large
    the petition. Raises `LookupError` for an unknown petition (nothing written)."""
    if not scalar(conn, "SELECT count(*) FROM petitions WHERE id = %s", [petition_id]):
        raise LookupError(f"no petition {petition_id}")
    writer = csv.writer(out, lineterminator="\n")
    header = [*EXPORT_COLUMNS, *(["email"] if include_email else []), *(["state"] if include_pending else [])]
    writer.writerow(header)
    states = ["validated", "pending"] if include_pending else ["validated"]
    written = 0
    with conn.transaction(), conn.cursor(name="sigingest_export") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(EXPORT, [petition_id, states])
        for name, country, postcode, accepted_at, email, state in cursor:
            row = [name, country, postcode, accepted_at, *([email] if include_email else [])]
            row += [state] if include_pending else []
            writer.writerow([_cell(v) for v in row])
            written += 1
    return written


def anonymize(conn: Conn, closed_before: datetime, *, batch_size: int = 5000) -> int:
    """Replace names and emails (and clear postcode, IP hash and opt-in) of signatures on
    petitions closed before `closed_before`, in batches, and drop those petitions' reminder
    history. Counts, states, countries and times stay. Irreversible; idempotent. Returns
    signature rows changed."""
    with conn.transaction():
        conn.execute(FORGET_CLOSED_REMINDERS, {"before": closed_before})
    changed = 0
    while True:
        with conn.transaction():
            cursor = conn.execute(ANONYMIZE_BATCH, {"before": closed_before, "batch": batch_size})
        if cursor.rowcount <= 0:
            break
        changed += cursor.rowcount
    log.info("anonymized %d signatures on petitions closed before %s", changed, closed_before.date())
    return changed


@dataclass(frozen=True)
class Forgotten:
    signatures: int = 0
    counts: dict[int, int] = field(default_factory=dict)  # petition -> new count (where it changed)


def forget(conn: Conn, email: str, *, publish: Publish = no_publish) -> Forgotten:
    """Erase one person, by canonical email, from every petition and from the reminders' history,
    and take their validated signatures off the counts, in one transaction. Raises `ValueError`
    for a non-address."""
    if email.strip().count("@") != 1:
        raise ValueError("EMAIL must be an email address; nothing changed")
    canonical = canonical_email(email.strip())
    with conn.transaction():
        # First, and even with no signature left (an earlier version's forget kept these).
        conn.execute(FORGET_REMINDERS, {"email": canonical})
        ids = [
            num(i)
            for (i,) in conn.execute(
                "SELECT DISTINCT petition_id FROM signatures WHERE canonical_email = %s", [canonical]
            )
        ]
        if not ids:
            return Forgotten()
        conn.execute(LOCK_PETITIONS, [ids])  # before touching rows, in the batch writer's order
        erased = conn.execute(ERASE, [canonical]).fetchall()
        petitions = [num(p) for p, _, valid, pending in erased if valid or pending]
        valid = [num(v) for _, _, v, pending in erased if v or pending]
        pending = [num(w) for _, _, v, w in erased if v or w]
        changed = conn.execute(SUBTRACT_COUNTS, [petitions, valid, pending]).fetchall()
        counts = {num(i): num(c) for i, c, n in changed if n}
        publish(counts)
    total = sum(num(n) for _, n, *_ in erased)
    log.info("forgot one person: %d signatures on %d petitions", total, len(erased))
    return Forgotten(total, counts)
