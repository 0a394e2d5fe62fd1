"""`sigingest invalidate`: mark matching validated signatures `invalidated` and take them off
the count, in batches, each batch one transaction (rows and count change together). Matching
`pending` signatures (awaiting email confirmation) are invalidated too, so a later click cannot
count them; they leave the pending count, not the count.

Idempotent: only `validated` and `pending` rows match, so a second run (or a run resumed after an
interruption) changes nothing already changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.integrity.db import Conn, Publish, no_publish, num, scalar
from worker.pipeline.emails import canonical_email

# One batch: lock the picked rows, flip them, take the flipped ones off the count. Rows another
# transaction changed meanwhile fail the re-checked `state = 'validated'` and are not counted.
INVALIDATE_BATCH = """
WITH picked AS (
    SELECT id, state FROM signatures WHERE {where} ORDER BY id LIMIT %(batch)s FOR UPDATE
), changed AS (
    UPDATE signatures s SET state = 'invalidated' FROM picked
    WHERE s.id = picked.id AND picked.state IN ('validated', 'pending') RETURNING s.id, picked.state AS was
)
UPDATE petitions SET
    signature_count = signature_count - (SELECT count(*) FROM changed WHERE was = 'validated'),
    awaiting_count = greatest(awaiting_count - (SELECT count(*) FROM changed WHERE was = 'pending'), 0)
WHERE id = %(petition)s AND EXISTS (SELECT 1 FROM changed)
RETURNING signature_count, (SELECT count(*) FROM changed)
"""


class BadCriteria(ValueError):
    """The command line asks for something unsafe or malformed: nothing was changed."""


@dataclass(frozen=True)
class Criteria:
    """Which signatures of one petition to invalidate; at least one filter besides the petition."""

    petition_id: int
    ip_hash: str | None = None
    domain: str | None = None
    email: str | None = None  # any form; matched by canonical email
    since: datetime | None = None  # accepted_at >= since
    until: datetime | None = None  # accepted_at < until

    def __post_init__(self) -> None:
        if not any((self.ip_hash, self.domain, self.email, self.since, self.until)):
            raise BadCriteria(
                "give at least one of --ip-hash, --domain, --email, --since, --until: "
                "invalidating a whole petition is refused"
            )
        if self.email is not None and self.email.count("@") != 1:
            raise BadCriteria("--email must be an email address")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise BadCriteria("--since and --until need a time zone (e.g. 2026-11-29T10:00Z)")
        if self.since and self.until and self.since >= self.until:
            raise BadCriteria("--since must be before --until")

    def where(self) -> tuple[str, dict[str, object]]:
        """SQL conditions for the petition's matching validated (or pending) signatures, and their
        values."""
        clauses = ["petition_id = %(petition)s", "state IN ('validated', 'pending')"]
        params: dict[str, object] = {"petition": self.petition_id}
        if self.ip_hash:
            clauses.append("ip_hash = %(ip_hash)s")
            params["ip_hash"] = self.ip_hash.strip().lower()
        if self.domain:
            clauses.append("split_part(canonical_email, '@', 2) = %(domain)s")
            params["domain"] = self.domain.strip().lower().lstrip("@")
        if self.email:
            clauses.append("canonical_email = %(email)s")
            params["email"] = canonical_email(self.email.strip())
        if self.since:
            clauses.append("accepted_at >= %(since)s")
            params["since"] = self.since
        if self.until:
            clauses.append("accepted_at < %(until)s")
            params["until"] = self.until
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class Invalidated:
    changed: int
    signature_count: int | None  # after the last batch; None when nothing changed or dry run


class PetitionMissing(LookupError):
    """No such petition: nothing was changed."""


def count_matching(conn: Conn, criteria: Criteria) -> int:
    """The dry run: how many signatures `invalidate` would change now."""
    _require_petition(conn, criteria.petition_id)
    where, params = criteria.where()
    return scalar(conn, f"SELECT count(*) FROM signatures WHERE {where}", params)


def invalidate(
    conn: Conn, criteria: Criteria, *, batch_size: int = 5000, publish: Publish = no_publish
) -> Invalidated:
    """Invalidate every match, `batch_size` a transaction, publishing the count in each."""
    _require_petition(conn, criteria.petition_id)
    where, params = criteria.where()
    sql = INVALIDATE_BATCH.format(where=where)
    changed, count = 0, None
    while True:
        with conn.transaction():
            row = conn.execute(sql, {**params, "batch": batch_size}).fetchone()
            if row is None:  # nothing left to change: the petition row was not touched
                return Invalidated(changed, count)
            count, flipped = num(row[0]), num(row[1])
            publish({criteria.petition_id: count})
        changed += flipped


def _require_petition(conn: Conn, petition_id: int) -> None:
    if not scalar(conn, "SELECT count(*) FROM petitions WHERE id = %s", [petition_id]):
        raise PetitionMissing(f"no petition {petition_id}; nothing changed")
