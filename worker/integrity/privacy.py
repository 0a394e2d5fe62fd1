"""Privacy: stream a petition's signatures as CSV, anonymize closed petitions, forget a person.

Nothing here logs a name or an email: only petition ids and numbers of rows.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import redis

from worker.drain.erasures import ERASURE_LOCK
from worker.drain.streams import translated
from worker.integrity.db import LOCK_PETITIONS, Conn, Publish, no_publish, num, scalar
from worker.keys import Keys
from worker.pipeline.emails import canonical_email
from worker.pipeline.entry import Entry, UndecodableEntry, decode

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


def forget(
    conn: Conn, email: str, *, publish: Publish = no_publish, mark: Callable[[str], None] | None = None
) -> Forgotten:
    """Erase one person, by canonical email, from every petition and from the reminders' history,
    and take their validated signatures off the counts, in one transaction. Raises `ValueError`
    for a non-address.

    `mark` (`Erasures.mark`) first records the erasure where the drain looks, so a submission of
    theirs still queued is stored as `erased` when it arrives; the exclusive `ERASURE_LOCK` then
    waits for the batches in flight, which either saw the mark or are committed and erased here."""
    if email.strip().count("@") != 1:
        raise ValueError("EMAIL must be an email address; nothing changed")
    canonical = canonical_email(email.strip())
    if mark is not None:
        mark(canonical)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [ERASURE_LOCK])
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


def forget_dead_letters(conn: Conn, client: redis.Redis, keys: Keys, email: str) -> int:
    """Delete the dead letters that carry this person's address (their payload holds name and
    address), recording each one's receipt as an `erased` reject so a requeue or a late copy
    cannot store it. A payload too broken to decode goes when it holds the address at all.
    Returns how many went. Raises `ValueError` for a non-address, `QueueUnavailable`."""
    if email.strip().count("@") != 1:
        raise ValueError("EMAIL must be an email address; nothing changed")
    canonical = canonical_email(email.strip())
    gone = 0
    after = "-"
    while True:
        with translated():
            chunk: Any = client.xrange(keys.dead_letters, min=after, count=FETCH_ROWS)
        for dead_id, fields in chunk:
            found = _holds_person(fields, canonical, email.strip().lower())
            if found is not None:
                if found.receipt:
                    _record_erased(conn, found)
                with translated():
                    client.xdel(keys.dead_letters, dead_id)
                gone += 1
        if len(chunk) < FETCH_ROWS:
            break
        after = "(" + (chunk[-1][0].decode() if isinstance(chunk[-1][0], bytes) else chunk[-1][0])
    log.info("forgot one person in the dead letters: %d entries", gone)
    return gone


class _Found(NamedTuple):
    receipt: str | None
    petition_id: int | None
    accepted_at: datetime | None


def _holds_person(fields: dict[bytes, bytes], canonical: str, given: str) -> _Found | None:
    """This dead letter's receipt when it is the person's; None when it is someone else's."""
    payload = fields.get(b"payload", b"")
    try:
        submission = decode(Entry(0, "0-0", payload))
        address = str(submission.raw_fields.get("email", ""))
        if address.count("@") == 1 and canonical_email(address) == canonical:
            return _Found(submission.receipt, submission.petition_id, submission.accepted_at)
        return None
    except (UndecodableEntry, ValueError):
        text = payload.decode("utf-8", "replace").lower()
        return _Found(None, None, None) if canonical in text or given in text else None


def _record_erased(conn: Conn, found: _Found) -> None:
    petition = found.petition_id if found.petition_id and 0 < found.petition_id < 2**63 else None
    with conn.transaction():
        conn.execute(
            "INSERT INTO rejected_signatures (receipt, petition_id, reason, accepted_at)"
            " VALUES (%s, %s, 'erased', %s) ON CONFLICT (receipt) DO NOTHING",
            [found.receipt, petition, found.accepted_at],
        )
