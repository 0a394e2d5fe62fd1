"""Operator tools and pending signatures: never counted, never exported unless asked, and a
pending signature erased or invalidated cannot be counted by a late click."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import psycopg
from starlette.testclient import TestClient

from tests.helpers import read_invariant
from tests.worker.confirm.conftest import link_path
from tests.worker.reminders.conftest import Recorder
from worker.drain.registry import PetitionCard
from worker.integrity.invalidate import Criteria, invalidate
from worker.integrity.privacy import export_csv, forget
from worker.integrity.reconcile import find_drift
from worker.reminders.confirmations import ConfirmReport

DB = psycopg.Connection[tuple[object, ...]]


def sign(client: TestClient, petition_id: int, email: str) -> str:
    response = client.post(f"/petitions/{petition_id}/signatures", json={"email": email, "name": "Ann Lee"})
    assert response.status_code == 202
    return str(response.json()["receipt"])


def petition_counts(db: DB, petition_id: int) -> tuple[int, int]:
    row = db.execute(
        "SELECT signature_count, awaiting_count FROM petitions WHERE id = %s", [petition_id]
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])  # type: ignore[call-overload]


def test_export_leaves_pending_signatures_out_unless_asked(
    client: TestClient, confirm_petition: PetitionCard, drain: Callable[[], int], db: DB
) -> None:
    sign(client, confirm_petition.id, "ann@example.org")
    drain()
    plain, with_pending = io.StringIO(), io.StringIO()
    assert export_csv(db, confirm_petition.id, plain) == 1  # the starter only
    assert export_csv(db, confirm_petition.id, with_pending, include_pending=True) == 2
    rows = list(csv.DictReader(io.StringIO(with_pending.getvalue())))
    assert sorted(r["state"] for r in rows) == ["pending", "validated"]
    assert "state" not in plain.getvalue().splitlines()[0]


def test_reconcile_sees_no_drift_with_pending_signatures(
    client: TestClient, confirm_petition: PetitionCard, drain: Callable[[], int], db: DB
) -> None:
    for n in range(5):
        sign(client, confirm_petition.id, f"s{n}@example.org")
    drain()
    assert find_drift(db) == []
    assert read_invariant(db).counts_match


def test_a_forgotten_pending_signer_leaves_the_pending_count_and_their_link_counts_nothing(
    client: TestClient,
    confirm_petition: PetitionCard,
    drain: Callable[[], int],
    send: Callable[..., ConfirmReport],
    mailbox: Recorder,
    db: DB,
) -> None:
    receipt = sign(client, confirm_petition.id, "ann@example.org")
    drain()
    send()
    link = link_path(mailbox, "ann@example.org")
    assert petition_counts(db, confirm_petition.id) == (1, 1)
    assert forget(db, "ann@example.org").signatures == 1
    assert petition_counts(db, confirm_petition.id) == (1, 0)
    client.post(link)
    drain()
    assert petition_counts(db, confirm_petition.id) == (1, 0)
    reason = db.execute("SELECT reason FROM refused_confirmations WHERE receipt = %s", [receipt]).fetchone()
    assert reason == ("erased",)


def test_invalidating_pending_signatures_keeps_a_late_click_from_counting_them(
    client: TestClient,
    confirm_petition: PetitionCard,
    drain: Callable[[], int],
    send: Callable[..., ConfirmReport],
    mailbox: Recorder,
    db: DB,
) -> None:
    sign(client, confirm_petition.id, "bot1@spam.example")
    sign(client, confirm_petition.id, "ann@example.org")
    drain()
    send()
    done = invalidate(db, Criteria(confirm_petition.id, domain="spam.example"))
    assert done.changed == 1
    assert petition_counts(db, confirm_petition.id) == (1, 1)
    client.post(link_path(mailbox, "bot1@spam.example"))
    client.post(link_path(mailbox, "ann@example.org"))
    drain()
    assert petition_counts(db, confirm_petition.id) == (2, 0)
    assert db.execute("SELECT reason FROM refused_confirmations").fetchall() == [("invalidated",)]
