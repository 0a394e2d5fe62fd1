"""PostgreSQL edge of the reminders: eligible petitions, prospects in pages, deliveries, unsubscribes.

The connection is in autocommit mode; each function is one statement, so each is its own
transaction. Choosing a page of prospects and recording them in `reminder_deliveries` is one
statement (`record_page`): a person is never chosen without being recorded, and the unique
(person, petition) constraint makes a second delivery row for the pair impossible.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import psycopg

from worker.reminders.tokens import delivery_of_field, signature_of_field

# Held on the run's own connection; PostgreSQL drops it if the process or connection dies.
# Advisory locks are per database, so deployments (and tests) with their own database never meet.
RUN_LOCK = 764206

ELIGIBLE_PETITIONS = """
SELECT p.id, p.title, p.starter_name, r.recent
FROM petitions p
CROSS JOIN LATERAL (
    SELECT count(*) AS recent FROM signatures s
    WHERE s.petition_id = p.id AND s.accepted_at > now() - interval '24 hours'
) r
WHERE p.status = 'open' AND r.recent >= %(min_recent)s
ORDER BY r.recent DESC, p.id
"""

# People who opted in on another petition (and did not opt out on a later signature), have not
# signed this one, have not unsubscribed, were never reminded of this petition, were not reminded
# of anything within the minimum interval or in this run.
NOT_EXCLUDED = """
  AND s.opt_in AND s.state = 'validated' AND s.canonical_email IS NOT NULL
  AND s.petition_id <> %(petition)s
  AND NOT EXISTS (
      SELECT 1 FROM signatures later
      WHERE later.canonical_email = s.canonical_email AND NOT later.opt_in
        AND later.accepted_at > s.accepted_at)
  AND NOT EXISTS (
      SELECT 1 FROM signatures mine
      WHERE mine.petition_id = %(petition)s AND mine.canonical_email = s.canonical_email)
  AND NOT EXISTS (SELECT 1 FROM unsubscribes u WHERE u.canonical_email = s.canonical_email)
  AND NOT EXISTS (
      SELECT 1 FROM reminder_deliveries d
      WHERE d.canonical_email = s.canonical_email
        AND (d.petition_id = %(petition)s OR d.run_id = %(run)s
             OR d.recorded_at > now() - make_interval(secs => %(min_interval)s)))
"""

# One row per person (newest signature), walked in canonical-email order after `after`: keyset
# pagination on signatures_reminder_prospects.
PROSPECTS = f"""
SELECT DISTINCT ON (s.canonical_email) s.canonical_email, s.email, s.name
FROM signatures s
WHERE s.canonical_email > %(after)s {NOT_EXCLUDED}
ORDER BY s.canonical_email, s.accepted_at DESC
LIMIT %(limit)s
"""

RECORD_PAGE = f"""
WITH page AS ({PROSPECTS}),
recorded AS (
    INSERT INTO reminder_deliveries (petition_id, canonical_email, run_id)
    SELECT %(petition)s, canonical_email, %(run)s FROM page
    ON CONFLICT DO NOTHING
    RETURNING id, canonical_email
)
SELECT (SELECT count(*) FROM page), (SELECT max(canonical_email) FROM page),
       coalesce((SELECT array_agg(id ORDER BY canonical_email) FROM recorded), '{{}}')
"""

# The same choice among signatures newer than `after_id` only, walked by id (an idle petition).
RECORD_NEW_PAGE = f"""
WITH page AS (
    SELECT s.id, s.canonical_email FROM signatures s
    WHERE s.id > %(after_id)s AND s.id <= %(until_id)s {NOT_EXCLUDED}
    ORDER BY s.id
    LIMIT %(limit)s
),
recorded AS (
    INSERT INTO reminder_deliveries (petition_id, canonical_email, run_id)
    SELECT DISTINCT %(petition)s::bigint, canonical_email, %(run)s FROM page
    ON CONFLICT DO NOTHING
    RETURNING id, canonical_email
)
SELECT (SELECT count(*) FROM page), (SELECT max(id) FROM page)::text,
       coalesce((SELECT array_agg(id ORDER BY canonical_email) FROM recorded), '{{}}')
"""

# Deliveries left pending by a temporary failure or a crash, one per person, now taken by this run.
CLAIM_DUE = """
WITH due AS (
    SELECT DISTINCT ON (canonical_email) id FROM reminder_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY canonical_email, next_attempt_at, id
    LIMIT %(limit)s
)
UPDATE reminder_deliveries d SET run_id = %(run)s FROM due WHERE d.id = due.id
RETURNING d.id
"""

# Everything needed to render, read at render time: the live count and status, the address.
LOAD = """
SELECT d.id, d.canonical_email, d.petition_id, sig.email, sig.name,
       p.title, p.starter_name, p.status, p.signature_count,
       EXISTS (SELECT 1 FROM unsubscribes u WHERE u.canonical_email = d.canonical_email)
FROM reminder_deliveries d
JOIN petitions p ON p.id = d.petition_id
LEFT JOIN LATERAL (
    SELECT s.email, s.name FROM signatures s
    WHERE s.canonical_email = d.canonical_email AND s.email IS NOT NULL AND s.state = 'validated'
    ORDER BY s.accepted_at DESC LIMIT 1
) sig ON true
WHERE d.id = %(id)s AND d.status = 'pending'
"""

MARK_SENT = """
UPDATE reminder_deliveries
SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = %(id)s
"""
MARK_FAILED = """
UPDATE reminder_deliveries SET status = 'failed', attempts = attempts + 1, last_error = %(error)s
WHERE id = %(id)s
"""
MARK_SKIPPED = "UPDATE reminder_deliveries SET status = 'skipped', last_error = %(error)s WHERE id = %(id)s"
# Backoff doubles per attempt from `base`, capped; after `max_attempts` the delivery is failed.
MARK_RETRY = """
UPDATE reminder_deliveries
SET attempts = attempts + 1, last_error = %(error)s,
    status = CASE WHEN attempts + 1 >= %(max_attempts)s THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(
        secs => least(%(cap)s, %(base)s * power(2, attempts)::double precision))
WHERE id = %(id)s
RETURNING status
"""
# The server is down: everything due waits too, instead of each follow-up run trying one more.
DEFER_DUE = """
UPDATE reminder_deliveries SET next_attempt_at = now() + make_interval(secs => %(seconds)s)
WHERE status = 'pending' AND next_attempt_at <= now()
"""
NEXT_RETRY_IN = """
SELECT extract(epoch FROM min(next_attempt_at) - now())::double precision
FROM reminder_deliveries WHERE status = 'pending'
"""
LOAD_CURSOR = """
SELECT after, round_start_id, round_recorded, idle_after_id,
       coalesce(idle_since > now() - make_interval(secs => %(min_interval)s), false)
FROM reminder_cursors WHERE petition_id = %(petition)s
"""
SAVE_ROUND = """
INSERT INTO reminder_cursors (petition_id, after, round_start_id, round_recorded)
VALUES (%(petition)s, %(after)s, %(start)s, %(recorded)s)
ON CONFLICT (petition_id) DO UPDATE SET after = excluded.after, round_start_id = excluded.round_start_id,
    round_recorded = excluded.round_recorded, idle_after_id = NULL, idle_since = NULL, updated_at = now()
"""
GO_IDLE = """
INSERT INTO reminder_cursors (petition_id, idle_after_id, idle_since)
VALUES (%(petition)s, %(after_id)s, now())
ON CONFLICT (petition_id) DO UPDATE SET after = '', round_start_id = NULL, round_recorded = 0,
    idle_after_id = excluded.idle_after_id, idle_since = now(), updated_at = now()
"""
ADVANCE_IDLE = """
UPDATE reminder_cursors SET idle_after_id = %(after_id)s, updated_at = now() WHERE petition_id = %(petition)s
"""
# Unsubscribe links name a delivery row; its person is the one who unsubscribes. Old links named
# the address itself. A delivery row erased since (`forget`, or `anonymize` of the petition it was
# about) names no one any more: that unsubscribe is dropped with it.
UNSUBSCRIBERS = """
SELECT t.email, t.ms FROM unnest(%(emails)s::text[], %(email_ms)s::bigint[]) AS t(email, ms)
UNION ALL
SELECT d.canonical_email, t.ms
FROM unnest(%(ids)s::bigint[], %(id_ms)s::bigint[]) AS t(id, ms) JOIN reminder_deliveries d ON d.id = t.id
UNION ALL
SELECT s.canonical_email, t.ms
FROM unnest(%(sig_ids)s::bigint[], %(sig_ms)s::bigint[]) AS t(id, ms) JOIN signatures s ON s.id = t.id
"""
MOVE_UNSUBSCRIBES = f"""
INSERT INTO unsubscribes (canonical_email, unsubscribed_at)
SELECT DISTINCT ON (who.email) who.email, to_timestamp(who.ms / 1000.0)
FROM ({UNSUBSCRIBERS}) AS who ORDER BY who.email, who.ms
ON CONFLICT (canonical_email) DO NOTHING
"""

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Petition:
    id: int
    title: str
    starter_name: str
    recent: int  # signatures in the last 24 hours


@dataclass(frozen=True, slots=True)
class Prospect:
    canonical_email: str
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class Page:
    seen: int  # prospects the page held (fewer than asked: the walk is over)
    last: str | None  # the cursor for the next page
    delivery_ids: list[int]  # recorded now, in canonical-email order


@dataclass(frozen=True, slots=True)
class Pending:
    """A pending delivery as it stands at render time."""

    id: int
    canonical_email: str
    petition_id: int
    email: str | None
    name: str | None
    title: str
    starter_name: str
    petition_status: str
    signature_count: int
    unsubscribed: bool


def try_lock(conn: Conn) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (RUN_LOCK,)).fetchone()
    return bool(row and row[0])


def unlock(conn: Conn) -> None:
    """Release the run lock; a connection already lost has released it with itself."""
    with contextlib.suppress(psycopg.OperationalError):
        conn.execute("SELECT pg_advisory_unlock(%s)", (RUN_LOCK,))


def eligible_petitions(conn: Conn, min_recent: int) -> list[Petition]:
    """Open petitions with at least `min_recent` signatures in 24 h, the busiest first."""
    return [Petition(*row) for row in conn.execute(ELIGIBLE_PETITIONS, {"min_recent": min_recent})]


def prospect_params(
    petition_id: int, after: str, limit: int, min_interval: float, run_id: str
) -> dict[str, Any]:
    return {
        "petition": petition_id,
        "after": after,
        "limit": limit,
        "min_interval": min_interval,
        "run": run_id,
    }


def prospects(conn: Conn, petition_id: int, after: str, limit: int, min_interval: float) -> list[Prospect]:
    """One page of prospects, read only (the preview)."""
    params = prospect_params(petition_id, after, limit, min_interval, "")
    return [Prospect(*row) for row in conn.execute(PROSPECTS, params)]


def record_page(
    conn: Conn, petition_id: int, after: str, limit: int, min_interval: float, run_id: str
) -> Page:
    """Choose the next page of prospects and record a pending delivery for each, in one statement."""
    params = prospect_params(petition_id, after, limit, min_interval, run_id)
    row = conn.execute(RECORD_PAGE, params).fetchone()
    assert row is not None
    return Page(int(row[0]), row[1], list(row[2]))


def claim_due(conn: Conn, run_id: str, limit: int) -> list[int]:
    rows = conn.execute(CLAIM_DUE, {"run": run_id, "limit": limit}).fetchall()
    return sorted(int(row[0]) for row in rows)


def load(conn: Conn, delivery_id: int) -> Pending | None:
    row = conn.execute(LOAD, {"id": delivery_id}).fetchone()
    return Pending(*row) if row else None


def mark_sent(conn: Conn, delivery_id: int) -> None:
    conn.execute(MARK_SENT, {"id": delivery_id})


def mark_failed(conn: Conn, delivery_id: int, error: str) -> None:
    conn.execute(MARK_FAILED, {"id": delivery_id, "error": error[:500]})


def mark_skipped(conn: Conn, delivery_id: int, why: str) -> None:
    conn.execute(MARK_SKIPPED, {"id": delivery_id, "error": why})


def mark_retry(
    conn: Conn, delivery_id: int, error: str, *, base: float, cap: float, max_attempts: int
) -> str:
    """Schedule another attempt after the backoff; returns the new status (`failed` when out of tries)."""
    params = {"id": delivery_id, "error": error[:500], "base": base, "cap": cap, "max_attempts": max_attempts}
    row = conn.execute(MARK_RETRY, params).fetchone()
    return str(row[0]) if row else "failed"


def defer_due(conn: Conn, seconds: float) -> None:
    conn.execute(DEFER_DUE, {"seconds": seconds})


def next_retry_in(conn: Conn) -> float | None:
    row = conn.execute(NEXT_RETRY_IN).fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a petition's walk stands (see the `reminder_cursors` table)."""

    after: str = ""
    round_start_id: int | None = None
    round_recorded: int = 0
    idle_after_id: int | None = None
    idle_fresh: bool = False  # idle, and its empty round ended less than the minimum interval ago


def load_cursor(conn: Conn, petition_id: int, min_interval: float) -> Cursor:
    row = conn.execute(LOAD_CURSOR, {"petition": petition_id, "min_interval": min_interval}).fetchone()
    return Cursor(*row) if row else Cursor()


def save_round(conn: Conn, petition_id: int, after: str, start: int | None, recorded: int) -> None:
    conn.execute(SAVE_ROUND, {"petition": petition_id, "after": after, "start": start, "recorded": recorded})


def go_idle(conn: Conn, petition_id: int, after_id: int) -> None:
    conn.execute(GO_IDLE, {"petition": petition_id, "after_id": after_id})


def advance_idle(conn: Conn, petition_id: int, after_id: int) -> None:
    conn.execute(ADVANCE_IDLE, {"petition": petition_id, "after_id": after_id})


def max_signature_id(conn: Conn) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM signatures").fetchone()
    return int(row[0]) if row else 0


def record_new_page(
    conn: Conn,
    petition_id: int,
    after_id: int,
    until_id: int,
    limit: int,
    min_interval: float,
    run_id: str,
) -> Page:
    """Like `record_page`, among signatures with `after_id < id <= until_id`, in id order."""
    params = {**prospect_params(petition_id, "", limit, min_interval, run_id), "after_id": after_id}
    row = conn.execute(RECORD_NEW_PAGE, {**params, "until_id": until_id}).fetchone()
    assert row is not None
    return Page(int(row[0]), row[1], list(row[2]))


def _unsubscriber_params(entries: dict[str, int]) -> dict[str, list[Any]]:
    """The pending fields (`delivery:<id>`, `signature:<id>`, or an old link's canonical email)
    split by kind."""
    params: dict[str, list[Any]] = {
        k: [] for k in ("emails", "email_ms", "ids", "id_ms", "sig_ids", "sig_ms")
    }
    for field_name, ms in entries.items():
        delivery_id, signature_id = delivery_of_field(field_name), signature_of_field(field_name)
        if delivery_id is not None:
            params["ids"].append(delivery_id)
            params["id_ms"].append(ms)
        elif signature_id is not None:
            params["sig_ids"].append(signature_id)
            params["sig_ms"].append(ms)
        else:
            params["emails"].append(field_name)
            params["email_ms"].append(ms)
    return params


def move_unsubscribes(conn: Conn, entries: dict[str, int]) -> None:
    """Record unsubscribes (pending field -> ms since the epoch) as their people's canonical
    emails, the earliest time kept; repeating one changes nothing."""
    if entries:
        conn.execute(MOVE_UNSUBSCRIBES, _unsubscriber_params(entries))


def unsubscribers(conn: Conn, entries: dict[str, int]) -> set[str]:
    """The canonical emails the pending fields name (read only: nothing is recorded)."""
    if not entries:
        return set()
    return {row[0] for row in conn.execute(UNSUBSCRIBERS, _unsubscriber_params(entries))}
