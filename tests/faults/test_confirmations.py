"""Email confirmation with real Celery workers: the `reminders` queue's worker sends the email
through SMTP (aiosmtpd in the test), the ingest workers count the confirmation; and a worker
SIGKILLed in the middle of a batch of confirmations loses none and counts none twice."""

from __future__ import annotations

import pytest
from celery import Celery
from starlette.testclient import TestClient

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Worker,
    assert_invariant,
    children,
    fault_settings,
    intake,
    lock_waiters,
    petition_row_locked,
    queued,
    sigkill,
    stop_all,
    wait_drained,
)
from tests.helpers import backlog, start_worker, stop_process, wait_for
from tests.worker.confirm.conftest import link_path
from tests.worker.reminders.conftest import PUBLIC_URL, Recorder, mailbox, smtp  # noqa: F401
from worker.keys import REMINDERS_QUEUE
from worker.reminders.tokens import confirm_key, make_confirm_token
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


def one(db: DB, sql: str, *params: object) -> object:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def send_confirmations(settings: Settings) -> None:
    """Queue a `reminders.send_confirmations` run, as beat does every CONFIRM_EVERY."""
    app = Celery(broker=settings.broker_url)
    app.send_task("reminders.send_confirmations", queue=REMINDERS_QUEUE)
    app.close()


def test_sign_email_follow_the_link_counted_once_with_real_workers(
    settings: Settings,
    smtp: tuple[Recorder, int],  # noqa: F811
    make_petition: PetitionFactory,
    rt: Runtime,
    db: DB,
) -> None:
    mail, port = smtp
    s = fault_settings(settings, smtp_url=f"smtp://127.0.0.1:{port}", public_url=PUBLIC_URL)
    petition = make_petition(confirm_email=True)
    ingest = Worker(s, "ingest", concurrency=1)
    sender = start_worker(s, "mail", concurrency=1, queues=REMINDERS_QUEUE)
    try:
        with TestClient(intake_app(s), base_url=PUBLIC_URL) as client:
            answer = client.post(
                f"/petitions/{petition.id}/signatures", json={"email": "ann@example.org", "name": "Ann"}
            )
            assert answer.json()["confirmation"] == "email"
            wait_for(
                lambda: one(db, "SELECT count(*) FROM signatures WHERE state = 'pending'") == 1, timeout=30
            )
            send_confirmations(s)
            wait_for(lambda: len(mail.to("ann@example.org")) == 1, timeout=30)
            path = link_path(mail, "ann@example.org")
            assert client.get(path).status_code == 200
            for _ in range(3):  # she clicks three times
                assert client.post(path, follow_redirects=False).status_code == 303
            wait_for(
                lambda: backlog(rt) == (0, 0) and one(db, "SELECT awaiting_count FROM petitions") == 0, 30
            )
            assert one(db, "SELECT signature_count FROM petitions WHERE id = %s", petition.id) == 2
            body = client.get(f"/petitions/{petition.id}", headers={"accept": "application/json"}).json()
            assert (body["signature_count"], body["awaiting_confirmation"]) == (2, 0)
    finally:
        out = stop_all(ingest)
        stop_process(sender)
    assert_invariant(db, rt, [answer.json()["receipt"]], out)


def intake_app(settings: Settings):  # type: ignore[no-untyped-def]
    from api_stub.app import create_app

    return create_app(settings)


def confirmations_uncommitted(db: DB) -> bool:
    """A backend of this database has updated signature rows (confirmed them) and waits for a
    lock (the petition's row, to count them) without having committed."""
    row = db.execute(
        """SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
           JOIN pg_class c ON c.oid = l.relation
           WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'
             AND c.relname = 'signatures' AND l.mode = 'RowExclusiveLock' AND l.granted"""
    ).fetchone()
    return bool(row and row[0])


def test_a_worker_killed_mid_batch_of_confirmations_loses_none_and_counts_none_twice(
    settings: Settings, make_petition: PetitionFactory, rt: Runtime, db: DB, database_url: str, drain
) -> None:
    s = fault_settings(settings)
    petition = make_petition(confirm_email=True)
    load = queued(s, petition.id, 200)
    drain()  # all 200 stored pending
    assert one(db, "SELECT awaiting_count FROM petitions WHERE id = %s", petition.id) == 200
    key = confirm_key(s.unsubscribe_secret)
    with intake(s) as client:
        for n, receipt in enumerate(load.receipts):
            token = make_confirm_token(key, petition.id, receipt)
            for _ in range(2 if n % 3 == 0 else 1):  # a third of them click twice
                assert client.post(f"/confirm/{token}", follow_redirects=False).status_code == 303
    first = second = None
    try:
        with petition_row_locked(database_url, petition.id):
            # Given a worker whose pool process has confirmed a batch and waits to count it
            first = Worker(s, "k", concurrency=1)
            wait_for(lambda: confirmations_uncommitted(db), timeout=40)
            (victim,) = children(first.pid)
            # When that process is killed before it commits
            sigkill(victim)
            wait_for(lambda: victim not in children(first.pid), timeout=10)
        # Then the batch is claimed and confirmed by another worker, each signature once
        second = Worker(s, "k", concurrency=1)
        wait_for(lambda: one(db, "SELECT count(*) FROM signatures WHERE state = 'pending'") == 0, 45)
        wait_drained(db, rt, load.receipts)
    finally:
        out = stop_all(first, second)
    assert one(db, "SELECT signature_count FROM petitions WHERE id = %s", petition.id) == 201
    assert one(db, "SELECT awaiting_count FROM petitions WHERE id = %s", petition.id) == 0
    assert one(db, "SELECT count(*) FROM refused_confirmations") == 0
    assert rt.registry.get(petition.id).signature_count == 201  # type: ignore[union-attr]
    assert_invariant(db, rt, load.receipts, out)
    assert lock_waiters(db) == 0
