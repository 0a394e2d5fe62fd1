"""PostgreSQL adapter: write one planned batch in one transaction.

Inside the transaction, in order: read the batch's petitions' states, COPY the rows into a
staging table, insert them (`ON CONFLICT DO NOTHING` against the unique receipt and the one
live row per (canonical email, petition)), record the rows that lost as duplicates and the
rejects with their reasons, then add `+n` to each petition's counts in petition-id order (so
concurrent workers never deadlock). The commit makes the rows and the counts visible together.

Only a live row, `validated` or `pending` (awaiting its signer's confirmation), takes the
person's place: an uncounted (`fraudulent`, `invalidated`) row is stored beside any earlier
uncounted ones, so a script signing with a real person's address never keeps that person's own
signature from being counted. Any row for a person who already has a live one is a duplicate:
signing again while pending stores nothing (the confirmation email is owed again, at most once
per `confirm_resend_seconds`), and confirming `pending -> validated` never meets a second row.

Driver errors become `RetryLater` (server gone, deadlock, schema missing: wait for the operator)
or `BatchRejected` (PostgreSQL refused the content: the caller splits the batch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import psycopg
from psycopg import errors as pg_errors

from worker.drain.confirm_store import apply_confirmations, request_resends
from worker.drain.erasures import ERASURE_LOCK
from worker.errors import BatchRejected, RetryLater
from worker.pipeline.entry import Entry
from worker.pipeline.plan import BatchPlan, PetitionState, Reject, Row, check_petitions

# The columns in `Row`'s field order, so COPY takes a `Row` as it is.
ROW_COLUMNS = ", ".join(Row._fields)
STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS sig_staging ON COMMIT DELETE ROWS AS
SELECT {ROW_COLUMNS} FROM signatures WITH NO DATA
"""
# Decisions behind the insert (figures: BENCHMARKS.md, "Profile, round 3: the drain" and "Round 4"):
# - Rows go in key order (COLLATE "C": bytes, no locale calls), so concurrent batches that share
#   a person wait in one direction and never deadlock (tests/faults/test_viral_petition.py).
# - It returns only counts per (petition, state) and the staged rows that lost, not every row.
# - One arbiter, the person's live key (PERSON_CONFLICT): a receipt clash is a person clash, so checking the
#   receipt index first is wasted work; where it is not (a row rewritten by `anonymize`, its state
#   changed by `invalidate`, a reused receipt) the receipt index refuses (23505) and the batch is
#   written again with ON_ANY_CONFLICT.
# - An uncounted row clashes with nothing on that key: it is inserted only when the person has no
#   live row and its receipt is not stored (one look-up in the person's index entries).
# - `OFFSET 0` keeps each NOT EXISTS a per-row probe of the receipt index: as a hash anti join it
#   read the whole other table on every batch, a cost that grew with the table.
# - Planned at each batch (`prepare=False`): a plan cached while the tables were small would stay.
# The person's live key: the expression of the unique index `signatures_one_counted_per_person`
# (migration 0004), spelled the same so PostgreSQL infers that index as the arbiter.
PERSON_CONFLICT = (
    "ON CONFLICT (canonical_email, petition_id, (CASE WHEN state IN ('validated', 'pending') THEN true END))"
    " DO NOTHING"
)
INSERT_SIGNATURES = f"""
WITH stored AS (
    INSERT INTO signatures ({ROW_COLUMNS})
    SELECT {ROW_COLUMNS} FROM sig_staging s
    WHERE NOT EXISTS (SELECT 1 FROM rejected_signatures r WHERE r.receipt = s.receipt OFFSET 0)
      AND (s.state IN ('validated', 'pending') OR NOT EXISTS (
          SELECT 1 FROM signatures g WHERE g.canonical_email = s.canonical_email
          AND g.petition_id = s.petition_id
          AND (g.state IN ('validated', 'pending') OR g.receipt = s.receipt) OFFSET 0))
    ORDER BY s.canonical_email COLLATE "C", s.petition_id
    {PERSON_CONFLICT}
    RETURNING receipt, petition_id, state
)
SELECT NULL, petition_id, state, count(*), NULL FROM stored GROUP BY petition_id, state
UNION ALL
SELECT s.receipt, s.petition_id, NULL, 0, s.accepted_at FROM sig_staging s
WHERE NOT EXISTS (SELECT 1 FROM stored i WHERE i.receipt = s.receipt)
"""
ON_ANY_CONFLICT = INSERT_SIGNATURES.replace(PERSON_CONFLICT, "ON CONFLICT DO NOTHING")
assert ON_ANY_CONFLICT != INSERT_SIGNATURES


class ReceiptTaken(Exception):
    """The usual insert met a stored receipt under another person key: write with ON_ANY_CONFLICT."""


# The rejects arrive as one JSON array of `Reject` objects (orjson writes it in one C call, far
# cheaper than psycopg's array dumper over five lists); counted per (petition, reason) on the way back.
INSERT_REJECTS = """
WITH recorded AS (
    INSERT INTO rejected_signatures (receipt, petition_id, reason, detail, accepted_at)
    SELECT t.* FROM json_to_recordset(%s::json)
        AS t(receipt text, petition_id bigint, reason text, detail text, accepted_at timestamptz)
    WHERE NOT EXISTS (SELECT 1 FROM signatures g WHERE g.receipt = t.receipt OFFSET 0)
    ORDER BY t.receipt
    ON CONFLICT (receipt) DO NOTHING
    RETURNING petition_id, reason
)
SELECT petition_id, reason, count(*) FROM recorded GROUP BY petition_id, reason
"""
LOCK_PETITIONS = "SELECT id FROM petitions WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"
ADD_COUNTS = """
UPDATE petitions p
SET signature_count = p.signature_count + d.n, duplicate_count = p.duplicate_count + d.dup,
    awaiting_count = p.awaiting_count + d.awaiting
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) AS d(id, n, dup, awaiting)
WHERE p.id = d.id
RETURNING p.id, p.signature_count, p.awaiting_count
"""


# COPY's text format (https://www.postgresql.org/docs/current/sql-copy.html): NULL is `\N`, and a
# backslash, tab, newline or carriage return inside a value is escaped with a backslash.
NULL = "\\N"
BOOLEAN = {True: "t", False: "f", None: NULL}


def _copy_value(value: object) -> str:
    if value is None or value is True or value is False:
        return BOOLEAN[value]
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_text(rows: list[Row]) -> str:
    """`rows` as COPY text, one line each in `ROW_COLUMNS` order, built in one go (psycopg's
    per-row `write_row` was the store's largest Python cost). Every line is first joined as it
    is; if the text then holds more backslashes than the NULLs written, a carriage return, or
    more tabs or line breaks than it should (a value carried one), it is built again with each
    value escaped."""
    stamps: dict[datetime, str] = {}
    lines = []
    nulls = 0
    for receipt, petition_id, email, canonical, name, postcode, country, opt_in, ip_hash, at, state in rows:
        stamp = stamps.get(at)
        if stamp is None:
            stamp = stamps[at] = at.isoformat()
        if postcode is None or country is None or ip_hash is None:
            nulls += (postcode is None) + (country is None) + (ip_hash is None)
            postcode = NULL if postcode is None else postcode
            country = NULL if country is None else country
            ip_hash = NULL if ip_hash is None else ip_hash
        lines.append(
            f"{receipt}\t{petition_id}\t{email}\t{canonical}\t{name}\t{postcode}\t{country}\t"
            f"{BOOLEAN[opt_in]}\t{ip_hash}\t{stamp}\t{state}\n"
        )
    text = "".join(lines)
    separators = len(Row._fields) - 1
    if (
        text.count("\\") != nulls
        or "\r" in text
        or text.count("\t") != separators * len(rows)
        or text.count("\n") != len(rows)
    ):
        text = "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)
    return text


@dataclass
class BatchOutcome:
    """What one committed batch changed."""

    persisted: Counter[int] = field(default_factory=Counter)  # petition -> counted rows
    uncounted: int = 0  # rows stored but not counted (fraudulent, pending)
    duplicates: Counter[int] = field(default_factory=Counter)  # petition -> duplicates
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> entries (not duplicates)
    counts: dict[int, int] = field(default_factory=dict)  # petition -> signature_count after commit
    pending: Counter[int] = field(default_factory=Counter)  # petition -> rows stored awaiting confirmation
    confirmed: Counter[int] = field(default_factory=Counter)  # petition -> confirmed (and counted) now
    refused_confirmations: Counter[str] = field(default_factory=Counter)  # reason -> confirmations
    waiting: list[Entry] = field(default_factory=list)  # confirmations left unacknowledged
    awaiting: dict[int, int] = field(default_factory=dict)  # petition -> awaiting_count after commit

    def merge(self, other: BatchOutcome) -> None:
        self.persisted.update(other.persisted)
        self.uncounted += other.uncounted
        self.duplicates.update(other.duplicates)
        self.rejected.update(other.rejected)
        self.pending.update(other.pending)
        self.confirmed.update(other.confirmed)
        self.refused_confirmations.update(other.refused_confirmations)
        self.waiting.extend(other.waiting)
        for petition, count in other.counts.items():
            self.counts[petition] = max(count, self.counts.get(petition, 0))
        self.awaiting.update(other.awaiting)


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable) as exc:
        raise RetryLater(f"PostgreSQL: {exc.sqlstate}") from None
    except (pg_errors.DataError, pg_errors.IntegrityError) as exc:
        # The primary message only: its DETAIL line quotes row values (an email address), and
        # this text goes to the logs and the dead-letter stream.
        raise BatchRejected(
            f"PostgreSQL refused the batch: {exc.sqlstate} {exc.diag.message_primary}"
        ) from None
    except psycopg.Error as exc:
        raise RetryLater(f"PostgreSQL unavailable: {type(exc).__name__}") from None


class SignatureStore:
    """One connection, reopened after failures. Not thread-safe: one per worker process."""

    def __init__(
        self,
        dsn: str,
        erased: Callable[[list[Row]], set[str]] | None = None,
        *,
        confirm_resend_seconds: float = 3600.0,
    ) -> None:
        """`erased` gives the receipts of rows whose person `forget` marked (drain/erasures.py):
        asked inside the transaction, under the shared `ERASURE_LOCK`. A pending signer who signs
        again is owed the confirmation email again after `confirm_resend_seconds`."""
        self._dsn = dsn
        self._erased = erased
        self._resend_seconds = confirm_resend_seconds
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            with translated():
                self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
                self._conn.execute(STAGING)
        return self._conn

    def write(self, plan: BatchPlan) -> BatchOutcome:
        """Commit the plan in one transaction and return what changed. Raises `RetryLater` or
        `BatchRejected`; in either case nothing of the plan is committed."""
        conn = self._connection()
        try:
            try:
                with translated(), conn.transaction():
                    return self._write(conn, plan, INSERT_SIGNATURES)
            except ReceiptTaken:  # rolled back: write it again, skipping rows that clash on any key
                with translated(), conn.transaction():
                    return self._write(conn, plan, ON_ANY_CONFLICT)
        except RetryLater:
            self.close()
            raise

    def _write(
        self, conn: psycopg.Connection[tuple[object, ...]], plan: BatchPlan, insert: str
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        petition_ids = plan.petition_ids()
        states = self._petition_states(conn, petition_ids)
        kept, erased = self._not_erased(conn, plan.rows)
        rows, petition_rejects = check_petitions(kept, states)
        petition_rejects += erased
        resend: list[str] = []
        if rows:
            with conn.cursor().copy(f"COPY sig_staging ({ROW_COLUMNS}) FROM STDIN") as copy:
                copy.write(copy_text(rows))
            try:
                stored = conn.execute(insert, prepare=False).fetchall()
            except pg_errors.UniqueViolation:
                if insert is ON_ANY_CONFLICT:
                    raise
                raise ReceiptTaken from None
            for receipt, petition_id, state, n, accepted_at in stored:
                if receipt is not None:
                    # Lost to an earlier signature of the same person, or a redelivery:
                    # INSERT_REJECTS skips receipts already stored or already rejected.
                    petition_rejects.append(
                        Reject(str(receipt), int(petition_id), "duplicate", None, accepted_at)  # type: ignore[call-overload, arg-type]
                    )
                    if states[int(petition_id)].confirm_email:  # type: ignore[call-overload]
                        resend.append(str(receipt))
                elif state == "validated":
                    outcome.persisted[int(petition_id)] += int(n)  # type: ignore[call-overload]
                else:
                    outcome.uncounted += int(n)  # type: ignore[call-overload]
                    if state == "pending":
                        outcome.pending[int(petition_id)] += int(n)  # type: ignore[call-overload]
        request_resends(conn, resend, self._resend_seconds)
        self._insert_rejects(conn, [*plan.rejects, *petition_rejects], outcome)
        confirmed = apply_confirmations(conn, plan.confirmations, plan.max_deliveries)
        outcome.confirmed, outcome.waiting = confirmed.confirmed, confirmed.waiting
        outcome.refused_confirmations = confirmed.refused
        outcome.counts, outcome.awaiting = self._add_counts(conn, outcome, petition_ids)
        return outcome

    def _not_erased(
        self, conn: psycopg.Connection[tuple[object, ...]], rows: list[Row]
    ) -> tuple[list[Row], list[Reject]]:
        """The rows but those of erased people, and those as `erased` rejects."""
        if self._erased is None or not rows:
            return rows, []
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", [ERASURE_LOCK])
        gone = self._erased(rows)
        if not gone:
            return rows, []
        erased = [
            Reject(r.receipt, r.petition_id, "erased", None, r.accepted_at) for r in rows if r.receipt in gone
        ]
        return [r for r in rows if r.receipt not in gone], erased

    @staticmethod
    def _petition_states(
        conn: psycopg.Connection[tuple[object, ...]], ids: list[int]
    ) -> dict[int, PetitionState]:
        if not ids:
            return {}
        cursor = conn.execute(
            "SELECT id, status, closed_at, confirm_email FROM petitions WHERE id = ANY(%s)", [ids]
        )
        return {int(i): PetitionState(str(s), c, bool(m)) for i, s, c, m in cursor}  # type: ignore[call-overload, arg-type]

    @staticmethod
    def _insert_rejects(
        conn: psycopg.Connection[tuple[object, ...]], rejects: list[Reject], outcome: BatchOutcome
    ) -> None:
        if not rejects:
            return
        recorded = conn.execute(INSERT_REJECTS, [orjson.dumps(rejects).decode()], prepare=False).fetchall()
        for petition_id, reason, n in recorded:
            if reason == "duplicate" and petition_id is not None:
                outcome.duplicates[int(petition_id)] += int(n)  # type: ignore[call-overload]
            else:
                outcome.rejected[str(reason)] += int(n)  # type: ignore[call-overload]

    @staticmethod
    def _add_counts(
        conn: psycopg.Connection[tuple[object, ...]], outcome: BatchOutcome, petition_ids: list[int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """Add the batch's `+n` (stored and confirmed) and its change to the pending count;
        returns the counts after it per petition, and the pending counts of the petitions that
        have or had pending signatures (the others need no publishing)."""
        # Every petition of the batch, even with nothing new (a redelivered batch): the counts
        # returned are published to the registry, which a crash before the publish left behind.
        ids = sorted(
            set(petition_ids) | set(outcome.persisted) | set(outcome.duplicates) | set(outcome.confirmed)
        )
        if not ids:
            return {}, {}
        # Take the hot rows' locks last and in id order: short holds, no lock-order deadlocks.
        conn.execute(LOCK_PETITIONS, [ids])
        params = [
            ids,
            [outcome.persisted[i] + outcome.confirmed[i] for i in ids],
            [outcome.duplicates[i] for i in ids],
            [outcome.pending[i] - outcome.confirmed[i] for i in ids],
        ]
        counts: dict[int, int] = {}
        awaiting: dict[int, int] = {}
        for i, count, pending in conn.execute(ADD_COUNTS, params):
            counts[int(i)] = int(count)  # type: ignore[call-overload]
            if pending or outcome.pending[int(i)] or outcome.confirmed[int(i)]:  # type: ignore[call-overload]
                awaiting[int(i)] = int(pending)  # type: ignore[call-overload]
        return counts, awaiting
