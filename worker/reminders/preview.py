"""`sigingest reminders preview`: the emails a run would send for one petition, rendered, unsent."""

from __future__ import annotations

import psycopg
import redis

from worker.keys import Keys
from worker.reminders import store
from worker.reminders.message import Reminder, render
from worker.reminders.run import hscan_chunks, letterhead
from worker.settings import Settings

PREVIEW_DATE = "(date of sending)"


def preview(settings: Settings, client: redis.Redis, petition_id: int, limit: int) -> str:
    """Text for the operator: the petition's eligibility, then up to `limit` rendered emails."""
    keys = Keys(settings.key_prefix, settings.shards)
    with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT title, starter_name, status, signature_count FROM petitions WHERE id = %s", (petition_id,)
        ).fetchone()
        if row is None:
            return f"no petition {petition_id}"
        title, starter, status, count = row
        eligible = {p.id: p.recent for p in store.eligible_petitions(conn, settings.reminder_min_recent)}
        people = store.prospects(conn, petition_id, "", max(limit, 0), settings.reminder_min_interval)
        # Unsubscribes not yet moved into PostgreSQL: a run would move them before sending.
        chunks = hscan_chunks(client, keys.pending_unsubscribes)
        pending = {field: ms for chunk in chunks for field, ms in chunk.items()}
        gone = store.unsubscribers(conn, pending)
    people = [p for p in people if p.canonical_email not in gone]
    lines = [_headline(petition_id, status, eligible.get(petition_id), settings.reminder_min_recent)]
    for person in people:
        reminder = Reminder(
            0, person.canonical_email, person.email, person.name, petition_id, title, starter, count
        )
        msg = render(reminder, letterhead(settings), PREVIEW_DATE)
        body = msg.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        lines += ["", f"To: {msg['To']}", f"Subject: {msg['Subject']}", "", text.rstrip(), "-" * 60]
    if not people:
        lines.append("no one would get a reminder for this petition now")
    return "\n".join(lines)


def _headline(petition_id: int, status: str, recent: int | None, min_recent: int) -> str:
    if status != "open":
        return f"petition {petition_id} is {status}: no reminders are sent for it"
    if recent is None:
        return (
            f"petition {petition_id} is open but has fewer than REMINDER_MIN_RECENT={min_recent} signatures "
            "in the last 24 h: a run would skip it now; these people would get one once it qualifies"
        )
    return f"petition {petition_id}: {recent} signatures in the last 24 h; a run would send these:"
