"""A pending signature holds the person's place as a counted one does, while a fraudulent row of
theirs never does (real Redis, PostgreSQL, the drain and an SMTP server): signing again while
pending stores no second row, and confirming counts the person once."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from starlette.testclient import TestClient

from tests.worker.confirm.conftest import link_path
from tests.worker.confirm.test_confirm_flow import counts, one, sign
from tests.worker.reminders.conftest import Recorder
from worker.drain.registry import PetitionCard
from worker.integrity.reconcile import find_drift
from worker.pipeline.entry import Entry, encode
from worker.pipeline.fields import SignatureFields
from worker.reminders.confirmations import ConfirmReport
from worker.runtime import Runtime

DB = psycopg.Connection[tuple[object, ...]]


def script_entry(receipt: str, petition_id: int, email: str) -> Entry:
    """A script's signature with this address: the honeypot filled, so it is stored fraudulent."""
    payload = encode(
        receipt,
        petition_id,
        time.time_ns() // 1_000_000,
        "c0ffee",
        SignatureFields(email, "Ann"),
        honeypot=True,
    )
    return Entry(0, "1-0", payload)


def ann_states(db: DB, petition_id: int) -> list[str]:
    rows = db.execute(
        "SELECT state FROM signatures WHERE petition_id = %s AND canonical_email = 'ann@example.org'"
        " ORDER BY state",
        [petition_id],
    )
    return [str(state) for (state,) in rows]


def test_signing_again_while_pending_beside_a_fraudulent_row_keeps_one_pending_row_counted_once(
    client: TestClient,
    confirm_petition: PetitionCard,
    rt: Runtime,
    drain: Callable[[], int],
    send: Callable[..., ConfirmReport],
    mailbox: Recorder,
    db: DB,
) -> None:
    # Given a script's fraudulent signature with Ann's address on a confirmation-mode petition
    rt.drainer.process([script_entry("bot-ann", confirm_petition.id, "ann@example.org")])
    assert ann_states(db, confirm_petition.id) == ["fraudulent"]
    # When Ann signs herself, her signature is stored pending beside it: the fraud took no place
    first = sign(client, confirm_petition.id, "ann@example.org")["receipt"]
    drain()
    assert ann_states(db, confirm_petition.id) == ["fraudulent", "pending"]
    assert send().sent == 1
    # And when she signs again while pending, no second row: a duplicate of the pending one
    second = sign(client, confirm_petition.id, "Ann@Example.org")["receipt"]
    drain()
    assert ann_states(db, confirm_petition.id) == ["fraudulent", "pending"]
    assert one(db, "SELECT receipt FROM signatures WHERE state = 'pending'") == first
    assert one(db, "SELECT reason FROM rejected_signatures WHERE receipt = %s", second) == "duplicate"
    assert counts(client, confirm_petition.id) == (1, 1)
    # Then following the emailed link (twice) counts her exactly once
    path = link_path(mailbox, "ann@example.org")
    assert client.post(path, follow_redirects=False).status_code == 303
    assert client.post(path, follow_redirects=False).status_code == 303
    drain()
    assert ann_states(db, confirm_petition.id) == ["fraudulent", "validated"]
    assert one(db, "SELECT signature_count FROM petitions WHERE id = %s", confirm_petition.id) == 2
    assert counts(client, confirm_petition.id) == (2, 0)
    assert one(db, "SELECT count(*) FROM refused_confirmations") == 0
    assert find_drift(db) == []


def test_in_one_batch_a_fraudulent_row_ahead_of_two_signatures_leaves_one_pending_row(
    confirm_petition: PetitionCard, rt: Runtime, db: DB
) -> None:
    # Given one batch: the script's entry with Ann's address ahead of her own two signatures
    now_ms = time.time_ns() // 1_000_000
    own = [
        Entry(
            0,
            f"{n + 2}-0",
            encode(f"ann-{n}", confirm_petition.id, now_ms, None, SignatureFields(email, "Ann")),
        )
        for n, email in enumerate(["ann@example.org", "ann+again@example.org"])
    ]
    result = rt.drainer.process([script_entry("bot-ann", confirm_petition.id, "ann@example.org"), *own])
    # Then the fraud is stored, her first signature pending, her second a duplicate
    assert ann_states(db, confirm_petition.id) == ["fraudulent", "pending"]
    assert one(db, "SELECT state FROM signatures WHERE receipt = 'ann-0'") == "pending"
    assert one(db, "SELECT reason FROM rejected_signatures WHERE receipt = 'ann-1'") == "duplicate"
    assert result.outcome.pending[confirm_petition.id] == 1
    assert one(db, "SELECT awaiting_count FROM petitions WHERE id = %s", confirm_petition.id) == 1
