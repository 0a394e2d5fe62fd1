"""Confirmation emails: one run expires old pending signatures, sends the owed confirmation
emails, then the one reminder to confirm. Run by the `reminders` queue's workers
(`reminders.send_confirmations`); several runs may go at once (rows are claimed with `SKIP
LOCKED`), so more mail worker processes send more.

Emails go out in chunks over one SMTP session per run (`transport.py` reuses it; never a
connection per message). A chunk's rows stay locked while it is sent and are marked in the same
transaction: a crash mid-chunk sends that chunk again (at least once; the Message-ID is fixed
per signature so receiving systems can tell the copy), never loses it. A signer who signs again
while pending puts the row back in the backlog (the drain's RESEND, at most once per
CONFIRM_RESEND_SECONDS).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import psycopg

from worker.drain.registry import Registry
from worker.reminders.confirm_message import ToConfirm, render_confirmation
from worker.reminders.message import Letterhead
from worker.reminders.transport import PermanentFailure, ServerUnavailable, TemporaryFailure, Transport

log = logging.getLogger(__name__)
Conn = psycopg.Connection[tuple[Any, ...]]
CHUNK = 100

_COLUMNS = "g.id, g.receipt, g.petition_id, g.email, g.name, g.canonical_email, p.title, p.starter_name"
OWED = f"""
SELECT {_COLUMNS} FROM signatures g JOIN petitions p ON p.id = g.petition_id
WHERE g.state = 'pending' AND g.confirm_sent_at IS NULL
ORDER BY g.id LIMIT %s
FOR UPDATE OF g SKIP LOCKED
"""
# Pending past CONFIRM_REMIND_AFTER, not yet reminded, not expiring, not unsubscribed.
DUE_REMINDERS = f"""
SELECT {_COLUMNS} FROM signatures g JOIN petitions p ON p.id = g.petition_id
WHERE g.state = 'pending'
  AND g.accepted_at < now() - make_interval(secs => %(after)s)
  AND g.accepted_at > now() - make_interval(secs => %(ttl)s)
  AND g.confirm_reminded_at IS NULL AND g.confirm_sent_at IS NOT NULL
  AND p.status = 'open'
  AND NOT EXISTS (SELECT 1 FROM unsubscribes u WHERE u.canonical_email = g.canonical_email)
ORDER BY g.accepted_at LIMIT %(limit)s
FOR UPDATE OF g SKIP LOCKED
"""
MARK_SENT = "UPDATE signatures SET confirm_sent_at = now() WHERE id = ANY(%s)"
MARK_REMINDED = "UPDATE signatures SET confirm_reminded_at = now() WHERE id = ANY(%s)"
# Pending rows past CONFIRM_TTL leave `signatures` (the person may sign again) and their receipts
# are kept as rejected `expired` (a late click is then recorded with that reason); the petitions'
# pending counts go down in the same transaction, petition locks last and in id order.
EXPIRE = """
WITH gone AS (
    DELETE FROM signatures WHERE id IN (
        SELECT id FROM signatures
        WHERE state = 'pending' AND accepted_at < now() - make_interval(secs => %(ttl)s)
        ORDER BY accepted_at LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    RETURNING receipt, petition_id, accepted_at
),
recorded AS (
    INSERT INTO rejected_signatures (receipt, petition_id, reason, accepted_at)
    SELECT receipt, petition_id, 'expired', accepted_at FROM gone
    ON CONFLICT (receipt) DO NOTHING
),
per_petition AS (SELECT petition_id, count(*) AS n FROM gone GROUP BY petition_id),
locked AS (
    SELECT p.id FROM petitions p JOIN per_petition d ON d.petition_id = p.id
    ORDER BY p.id FOR NO KEY UPDATE
)
UPDATE petitions p SET awaiting_count = greatest(p.awaiting_count - d.n, 0)
FROM per_petition d, locked l WHERE p.id = d.petition_id AND l.id = p.id
RETURNING p.id, p.awaiting_count, d.n
"""
EXPIRE_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class ConfirmPolicy:
    batch: int = 2000  # emails per run at most (confirmations first, then reminders)
    ttl: float = 7 * 86_400.0
    remind_after: float = 86_400.0


@dataclass
class ConfirmReport:
    sent: int = 0
    reminded: int = 0
    failed: int = 0
    retrying: int = 0  # refused for now (4xx): still owed
    expired: int = 0
    stopped: str | None = None
    owed: int = 0  # confirmation emails still owed after the run
    awaiting: dict[int, int] | None = None  # petitions whose pending count expiry lowered

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "reminded": self.reminded,
            "failed": self.failed,
            "retrying": self.retrying,
            "expired": self.expired,
            "owed": self.owed,
            "stopped": self.stopped,
        }


class _Stop(Exception):
    pass


class ConfirmationRun:
    def __init__(
        self, conn: Conn, transport: Transport, letterhead: Letterhead, key: bytes, policy: ConfirmPolicy
    ):
        self.conn, self.transport, self.letterhead = conn, transport, letterhead
        self.key, self.policy = key, policy
        self.report = ConfirmReport()

    def run(self) -> ConfirmReport:
        """Expire, send owed confirmations, then reminders, within the batch. Never raises for
        a mail server problem: the run stops and the rows stay owed for the next."""
        try:
            self.report.awaiting = self._expire()
            self._send_all(OWED, MARK_SENT, reminder=False)
            self._send_all(DUE_REMINDERS, MARK_REMINDED, reminder=True)
        except _Stop:
            pass
        finally:
            self.transport.close()
        return self.report

    def _expire(self) -> dict[int, int]:
        """Expire in chunks; returns the pending counts after it, per petition touched."""
        awaiting: dict[int, int] = {}
        while True:
            with self.conn.transaction():
                rows = self.conn.execute(EXPIRE, {"ttl": self.policy.ttl, "limit": EXPIRE_CHUNK}).fetchall()
            expired = sum(int(n) for *_, n in rows)
            self.report.expired += expired
            awaiting.update({int(i): int(left) for i, left, _ in rows})
            if expired < EXPIRE_CHUNK:
                return awaiting

    def _budget(self) -> int:
        r = self.report
        return self.policy.batch - (r.sent + r.reminded + r.failed + r.retrying)

    def _send_all(self, query: str, mark: str, *, reminder: bool) -> None:
        while (budget := self._budget()) > 0:
            limit = min(CHUNK, budget)
            with self.conn.transaction():
                params: Any = (
                    {"after": self.policy.remind_after, "ttl": self.policy.ttl, "limit": limit}
                    if reminder
                    else [limit]
                )
                chunk = [ToConfirm(*row) for row in self.conn.execute(query, params)]
                done = self._send_chunk(chunk, reminder)
                if done:
                    self.conn.execute(mark, [done])
            if len(chunk) < limit or self.report.stopped:
                if self.report.stopped:
                    raise _Stop
                return

    def _send_chunk(self, chunk: list[ToConfirm], reminder: bool) -> list[int]:
        """Send each; returns the ids to mark (sent, or refused for good: never retried)."""
        done: list[int] = []
        date = formatdate(usegmt=True)
        for item in chunk:
            try:
                message = render_confirmation(item, self.letterhead, self.key, date, reminder=reminder)
            except ValueError:  # an address no message can carry: never owed again
                log.warning("confirmation email for signature %d cannot be written", item.signature_id)
                self.report.failed += 1
                done.append(item.signature_id)
                continue
            try:
                self.transport.send_raw(message, self.letterhead.sender, item.email)
            except PermanentFailure:
                self.report.failed += 1
                done.append(item.signature_id)
            except ServerUnavailable as exc:
                self.report.stopped = f"server unavailable: {exc}"
                return done
            except TemporaryFailure:
                self.report.retrying += 1  # stays owed: tried again, by this run or the next
            else:
                done.append(item.signature_id)
                if reminder:
                    self.report.reminded += 1
                else:
                    self.report.sent += 1
        return done


def owed_emails(conn: Conn) -> int:
    """The unsent-email backlog: pending signatures whose confirmation email is owed."""
    row = conn.execute(
        "SELECT count(*) FROM signatures WHERE state = 'pending' AND confirm_sent_at IS NULL"
    ).fetchone()
    return int(row[0]) if row else 0


def send_confirmations(
    settings: Any, registry: Registry | None = None, *, transport: Transport | None = None
) -> ConfirmReport:
    """One run built from `settings` (the Celery task and tests); the pending counts expiry
    lowered are published to `registry` after the commit."""
    from worker.reminders.run import letterhead
    from worker.reminders.tokens import confirm_key
    from worker.reminders.transport import transport_for

    transport = transport or transport_for(
        settings.smtp_url, starttls=settings.smtp_starttls, timeout=settings.smtp_timeout_seconds
    )
    policy = ConfirmPolicy(settings.confirm_batch, settings.confirm_ttl, settings.confirm_remind_after)
    with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
        run = ConfirmationRun(
            conn, transport, letterhead(settings), confirm_key(settings.unsubscribe_secret), policy
        )
        report = run.run()
        report.owed = owed_emails(conn)
    if registry is not None:
        if report.awaiting:
            registry.set_awaiting(report.awaiting)
        registry.add_totals({"expired": report.expired}, gauges={"confirm_emails_owed": report.owed})
    log.info("confirmation emails: %s", report.summary())
    return report
