"""One reminders run: under a lock, move unsubscribes in, retry what is due, then walk eligible
petitions page by page, recording and sending, within REMINDER_BATCH and REMINDER_RATE.

Exactly-once in effect: a delivery row is written when a person is chosen (`store.record_page`)
and marked sent right after the SMTP server accepted the message. A crash in between leaves it
pending, and the next run sends it. The one window that can still yield a second email is a crash
after the server's 250 and before the UPDATE commits; the Message-ID is fixed per delivery, so
receiving systems can tell the copy.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import psycopg
import redis

from worker.drain.streams import translated
from worker.keys import Keys
from worker.reminders import store
from worker.reminders.message import Letterhead, Reminder, render
from worker.reminders.transport import (
    PermanentFailure,
    ServerUnavailable,
    TemporaryFailure,
    Transport,
    transport_for,
)
from worker.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Policy:
    batch: int = 1000
    rate: float = 10.0
    min_recent: int = 10
    min_interval: float = 7 * 86_400.0
    page_size: int = 500
    max_attempts: int = 8
    retry_base: float = 60.0
    retry_max: float = 3600.0

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(
            batch=s.reminder_batch,
            rate=s.reminder_rate,
            min_recent=s.reminder_min_recent,
            min_interval=s.reminder_min_interval,
            page_size=s.reminder_page_size,
            max_attempts=s.reminder_max_attempts,
            retry_base=s.reminder_retry_base_seconds,
            retry_max=s.reminder_retry_max_seconds,
        )


def letterhead(s: Settings) -> Letterhead:
    return Letterhead(s.reminder_from, s.public_url, s.unsubscribe_secret)


@dataclass
class RunReport:
    """What a run did, in counts (never addresses)."""

    run_id: str
    ran: bool = True  # False: another run held the lock, this one did nothing
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    skipped: int = 0
    stopped: str | None = None  # why the run stopped early (server unavailable)
    next_retry_in: float | None = None  # seconds until the earliest pending retry
    petitions: list[int] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return self.sent + self.failed + self.retrying

    def summary(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "sent": self.sent,
            "failed": self.failed,
            "retrying": self.retrying,
            "skipped": self.skipped,
            "stopped": self.stopped,
        }


class Pacer:
    """At most `rate` sends per second: each `wait()` returns no sooner than 1/rate after the last."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        now = self._clock()
        if self._next is not None and now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


class _Stop(Exception):
    """The server is unavailable: end the run; pending deliveries wait for the next."""


class ReminderRun:
    def __init__(
        self,
        conn: store.Conn,
        client: redis.Redis,
        keys: Keys,
        transport: Transport,
        letterhead: Letterhead,
        policy: Policy,
        *,
        pacer: Pacer | None = None,
        run_id: str | None = None,
    ) -> None:
        self.conn = conn
        self.redis = client
        self.keys = keys
        self.transport = transport
        self.letterhead = letterhead
        self.policy = policy
        self.pacer = pacer or Pacer(policy.rate)
        self.report = RunReport(run_id or uuid.uuid4().hex)

    def run(self) -> RunReport:
        """Do one run, or nothing if another holds the lock. Returns the report."""
        if not store.try_lock(self.conn):
            self.report.ran = False
            return self.report
        try:
            self._move_unsubscribes()
            try:
                self._send_all(store.claim_due(self.conn, self.report.run_id, self._budget()))
                for petition in store.eligible_petitions(self.conn, self.policy.min_recent):
                    if self._budget() <= 0:
                        break
                    self._walk(petition.id)
            except _Stop:
                store.defer_due(self.conn, self.policy.retry_base)
            self.report.next_retry_in = store.next_retry_in(self.conn)
        finally:
            self.transport.close()
            store.unlock(self.conn)
        log.info("reminders run %s: %s", self.report.run_id, self.report.summary())
        return self.report

    def _budget(self) -> int:
        return self.policy.batch - self.report.attempts

    def _move_unsubscribes(self) -> None:
        """Unsubscribes the intake left in Redis (delivery ids; old links' addresses) go into
        PostgreSQL as their people's canonical emails, then leave Redis."""
        key = self.keys.pending_unsubscribes
        with translated():
            for chunk in hscan_chunks(self.redis, key):
                store.move_unsubscribes(self.conn, chunk)
                self.redis.hdel(key, *chunk)

    def _move_new_unsubscribes(self) -> None:
        """Before a send: move whatever arrived during the run (one HLEN when nothing did), so the
        delivery's `unsubscribed` read from PostgreSQL is the whole truth."""
        with translated():
            arrived = self.redis.hlen(self.keys.pending_unsubscribes)
        if arrived:
            self._move_unsubscribes()

    def _walk(self, petition_id: int) -> None:
        cursor = store.load_cursor(self.conn, petition_id, self.policy.min_interval)
        if cursor.idle_after_id is not None and cursor.idle_fresh:
            self._walk_new(petition_id, cursor.idle_after_id)
        else:
            self._walk_round(petition_id, cursor)

    def _walk_round(self, petition_id: int, cursor: store.Cursor) -> None:
        """Walk everyone in canonical-email order, going on from where the last run stopped, until
        the round ends or the batch is spent. A round that records no one makes the petition idle."""
        after, start, recorded = cursor.after, cursor.round_start_id, cursor.round_recorded
        if not after or start is None:  # a new round
            after, start, recorded = "", store.max_signature_id(self.conn), 0
        while (budget := self._budget()) > 0:
            limit = min(self.policy.page_size, budget)
            page = store.record_page(
                self.conn, petition_id, after, limit, self.policy.min_interval, self.report.run_id
            )
            recorded += len(page.delivery_ids)
            self._send_page(petition_id, page)
            if page.seen < limit or page.last is None:
                if recorded == 0:
                    store.go_idle(self.conn, petition_id, start)
                else:
                    store.save_round(self.conn, petition_id, "", None, 0)
                return
            after = str(page.last)
            store.save_round(self.conn, petition_id, after, start, recorded)

    def _walk_new(self, petition_id: int, after_id: int) -> None:
        """An idle petition: look only at signatures added since, so a petition whose prospects
        were all reminded costs a short range scan per run, not a walk over everyone. A full round
        comes again once REMINDER_MIN_INTERVAL has passed (people it skipped then may qualify).
        A row committed late with an id below `until` waits for that round."""
        until = store.max_signature_id(self.conn)
        while (budget := self._budget()) > 0:
            limit = min(self.policy.page_size, budget)
            page = store.record_new_page(
                self.conn, petition_id, after_id, until, limit, self.policy.min_interval, self.report.run_id
            )
            self._send_page(petition_id, page)
            at_end = page.seen < limit or page.last is None
            after_id = until if at_end else int(str(page.last))
            store.advance_idle(self.conn, petition_id, after_id)
            if at_end:
                return

    def _send_page(self, petition_id: int, page: store.Page) -> None:
        if page.delivery_ids and petition_id not in self.report.petitions:
            self.report.petitions.append(petition_id)
        self._send_all(page.delivery_ids)

    def _send_all(self, delivery_ids: list[int]) -> None:
        for delivery_id in delivery_ids:
            self._deliver(delivery_id)

    def _deliver(self, delivery_id: int) -> None:
        """Render with the live count, send, and record the outcome. Raises `_Stop` when the server
        is unavailable."""
        self._move_new_unsubscribes()
        pending = store.load(self.conn, delivery_id)
        if pending is None:
            return
        why_not = self._why_not(pending)
        if why_not:
            store.mark_skipped(self.conn, delivery_id, why_not)
            self.report.skipped += 1
            return
        assert pending.email is not None
        self.pacer.wait()
        message = render(_reminder(pending), self.letterhead, formatdate(usegmt=True))
        try:
            self.transport.send(message, self.letterhead.sender, pending.email)
        except PermanentFailure as exc:
            store.mark_failed(self.conn, delivery_id, str(exc))
            self.report.failed += 1
        except TemporaryFailure as exc:
            self._retry(delivery_id, str(exc))
            if isinstance(exc, ServerUnavailable):
                self.report.stopped = f"server unavailable: {exc}"
                raise _Stop from None
        else:
            store.mark_sent(self.conn, delivery_id)
            self.report.sent += 1

    def _why_not(self, pending: store.Pending) -> str | None:
        if pending.petition_status != "open":
            return f"petition {pending.petition_status}"
        if pending.unsubscribed:
            return "unsubscribed"
        if not pending.email:
            return "no address"
        return None

    def _retry(self, delivery_id: int, error: str) -> None:
        p = self.policy
        status = store.mark_retry(
            self.conn, delivery_id, error, base=p.retry_base, cap=p.retry_max, max_attempts=p.max_attempts
        )
        if status == "failed":
            self.report.failed += 1
        else:
            self.report.retrying += 1


def _reminder(p: store.Pending) -> Reminder:
    return Reminder(
        delivery_id=p.id,
        canonical_email=p.canonical_email,
        recipient_email=p.email or "",
        recipient_name=p.name or "",
        petition_id=p.petition_id,
        title=p.title,
        starter_name=p.starter_name,
        signature_count=p.signature_count,
    )


def hscan_chunks(client: redis.Redis, key: str, count: int = 1000) -> list[dict[str, int]]:
    """The hash's fields (decoded) and values (ms), in chunks; read before any is deleted."""
    chunks: list[dict[str, int]] = []
    chunk: dict[str, int] = {}
    for field_name, value in client.hscan_iter(key, count=count):
        chunk[field_name.decode()] = int(value)
        if len(chunk) >= count:
            chunks.append(chunk)
            chunk = {}
    if chunk:
        chunks.append(chunk)
    return chunks


def send_due(settings: Settings, client: redis.Redis, *, transport: Transport | None = None) -> RunReport:
    """One run with everything built from `settings` (the Celery task and `sigingest reminders send`)."""
    keys = Keys(settings.key_prefix, settings.shards)
    transport = transport or transport_for(
        settings.smtp_url, starttls=settings.smtp_starttls, timeout=settings.smtp_timeout_seconds
    )
    with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
        run = ReminderRun(conn, client, keys, transport, letterhead(settings), Policy.from_settings(settings))
        return run.run()
