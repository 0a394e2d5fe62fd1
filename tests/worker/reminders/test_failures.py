"""SMTP answers 4xx and 5xx, the server is down, the process dies mid-run, two runs overlap."""

from __future__ import annotations

import threading
from email.message import EmailMessage
from unittest import mock

import psycopg
import pytest

from tests.conftest import PetitionFactory
from tests.worker.reminders.conftest import Recorder, Runner, Signer, free_port, statuses
from worker.reminders.run import RunReport, send_due
from worker.reminders.transport import SmtpTransport
from worker.runtime import Runtime
from worker.settings import Settings

Db = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def two_prospects(make_petition: PetitionFactory, sign: Signer) -> int:
    """Clara's petition, eligible, and Ann and Bob who signed another one with opt-in."""
    clara = make_petition("Clara's", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", hours_ago=100)
    sign(old.id, "bob@example.org", hours_ago=100)
    return clara.id


def make_due(db: Db) -> None:
    """Time passes: every pending delivery's backoff is over."""
    db.execute("UPDATE reminder_deliveries SET next_attempt_at = now() - interval '1 second'")


def test_a_4xx_answer_is_retried_after_its_backoff_and_then_sent_once(
    two_prospects: int, run: Runner, mailbox: Recorder, db: Db
) -> None:
    mailbox.rcpt_answers["ann@example.org"] = ["451 4.7.1 Greylisted, try again later"]

    first = run()
    assert (first.sent, first.retrying) == (1, 1)  # Bob got his; Ann waits
    assert mailbox.recipients() == ["bob@example.org"]
    row = db.execute(
        "SELECT status, attempts, last_error, next_attempt_at > now() FROM reminder_deliveries "
        "WHERE canonical_email = 'ann@example.org'"
    ).fetchone()
    assert row == ("pending", 1, "451 4.7.1 Greylisted, try again later", True)
    assert first.next_retry_in is not None and first.next_retry_in > 0

    assert run().sent == 0  # not before the backoff is over
    make_due(db)
    assert run().sent == 1
    assert run().sent == 0
    make_due(db)
    assert run().sent == 0
    assert mailbox.recipients() == ["ann@example.org", "bob@example.org"]
    assert set(statuses(db).values()) == {"sent"}


def test_the_backoff_doubles_and_a_delivery_fails_after_reminder_max_attempts(
    two_prospects: int, run: Runner, mailbox: Recorder, db: Db
) -> None:
    mailbox.rcpt_answers["ann@example.org"] = ["452 4.2.2 Mailbox full"] * 3
    waits = []
    for _ in range(3):
        run(reminder_max_attempts=3, reminder_retry_base_seconds=100, reminder_retry_max_seconds=1000)
        row = db.execute(
            "SELECT status, extract(epoch FROM next_attempt_at - now()) FROM reminder_deliveries "
            "WHERE canonical_email = 'ann@example.org'"
        ).fetchone()
        assert row is not None
        waits.append(float(row[1]))  # type: ignore[arg-type]
        make_due(db)
    assert row[0] == "failed"
    assert 90 < waits[0] <= 100 and 190 < waits[1] <= 200  # the base, then doubled
    assert mailbox.recipients() == ["bob@example.org"]


def test_a_5xx_answer_marks_the_delivery_failed_and_it_is_never_retried(
    two_prospects: int, run: Runner, mailbox: Recorder, db: Db
) -> None:
    mailbox.rcpt_answers["ann@example.org"] = ["550 5.1.1 No such user"] * 5
    report = run()
    assert (report.sent, report.failed) == (1, 1)
    make_due(db)
    assert run().sent == 0
    assert run(reminder_min_interval=0).sent == 0
    assert mailbox.rcpt_answers["ann@example.org"] == ["550 5.1.1 No such user"] * 4  # asked once only
    row = db.execute(
        "SELECT status, last_error FROM reminder_deliveries WHERE canonical_email = 'ann@example.org'"
    ).fetchone()
    assert row == ("failed", "550 5.1.1 No such user")


def test_connection_refused_stops_the_run_and_retries_later_with_nothing_lost(
    two_prospects: int, run: Runner, mailbox: Recorder, db: Db, rsettings: Settings
) -> None:
    report = run(smtp_url=f"smtp://127.0.0.1:{free_port()}")
    assert report.sent == 0 and report.retrying == 1
    assert report.stopped is not None and "server unavailable" in report.stopped
    assert sorted(statuses(db).values()) == ["pending", "pending"]  # both recorded, none sent

    assert run().sent == 0  # the server is back, but both wait for the backoff (Bob's untried too)
    make_due(db)
    assert run().sent == 2
    assert run().sent == 0
    assert mailbox.recipients() == ["ann@example.org", "bob@example.org"]


class Crash(BaseException):
    """Stands for the process dying (BaseException: nothing in the run may swallow it)."""


def test_a_crash_after_recording_and_before_sending_is_retried_and_sends_once(
    two_prospects: int, run: Runner, mailbox: Recorder, db: Db
) -> None:
    # The process dies just as it would hand Ann's message to the server
    with mock.patch.object(SmtpTransport, "send", side_effect=Crash), pytest.raises(Crash):
        run()
    assert mailbox.received == []
    assert set(statuses(db).values()) == {"pending"}

    # The next run sends each of them exactly once, and later runs nothing
    assert run().sent == 2
    assert run().sent == 0
    make_due(db)
    assert run(reminder_min_interval=0).sent == 0
    assert mailbox.recipients() == ["ann@example.org", "bob@example.org"]


def test_a_crash_after_the_server_accepted_does_not_resend_what_was_marked_sent(
    two_prospects: int, run: Runner, mailbox: Recorder, db: Db
) -> None:
    real_send = SmtpTransport.send
    calls = []

    def send_then_die_on_second(self: SmtpTransport, msg: EmailMessage, sender: str, recipient: str) -> None:
        calls.append(recipient)
        if len(calls) == 2:
            raise Crash
        real_send(self, msg, sender, recipient)

    with mock.patch.object(SmtpTransport, "send", send_then_die_on_second), pytest.raises(Crash):
        run()
    assert mailbox.recipients() == ["ann@example.org"]
    assert run().sent == 1  # only Bob's, Ann's was accepted and marked
    assert mailbox.recipients() == ["ann@example.org", "bob@example.org"]


def test_two_overlapping_runs_never_send_twice(
    two_prospects: int, mailbox: Recorder, rsettings: Settings, rt: Runtime, db: Db
) -> None:
    # The first run is held inside its first DATA until the second run has finished
    second_done = threading.Event()
    mailbox.before_data = lambda: second_done.wait(10) and None
    reports: list[RunReport] = []
    first = threading.Thread(target=lambda: reports.append(send_due(rsettings, rt.redis)))
    first.start()
    try:
        wait = threading.Event()
        for _ in range(200):  # until the first run holds its lock and talks to the server
            if db.execute("SELECT count(*) FROM reminder_deliveries").fetchone() != (0,):
                break
            wait.wait(0.02)
        second = send_due(rsettings, rt.redis)
    finally:
        second_done.set()
        first.join(10)
    assert second.ran is False and second.sent == 0
    assert reports[0].sent == 2
    assert mailbox.recipients() == ["ann@example.org", "bob@example.org"]
    # And a run after both sends nothing
    mailbox.before_data = None
    assert send_due(rsettings, rt.redis).sent == 0
