"""A fraudulent or invalidated signature never keeps a real person from being counted (real Redis
and PostgreSQL). A script that signs with real supporters' addresses from one IP (or fills the
honeypot) is stored `fraudulent`; the person's own signature later, or in the same batch, is
stored `validated` and counted. Everything that reads signatures stays exact with several rows
per person."""

from __future__ import annotations

import io
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import BEHIND_PROXY, PROXY, drain_everything, read_invariant
from worker.drain.registry import PetitionCard
from worker.integrity.invalidate import Criteria, invalidate
from worker.integrity.privacy import export_csv, forget
from worker.integrity.reconcile import find_drift
from worker.pipeline.entry import Entry, encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]
T0_MS = 1_790_000_000_000
BOT = "bad0bad0bad0bad0bad0bad0bad0bad0"  # the hashed IP a script signs from


@pytest.fixture
def limited(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings.model_copy(update={"abuse_checks": True}))
    yield runtime
    runtime.drainer.store.close()
    runtime.engine.dispose()
    runtime.redis.close()


def people(db: DB, petition_id: int) -> dict[str, list[str]]:
    """Each signer's stored states, oldest first."""
    rows = db.execute(
        "SELECT canonical_email, state FROM signatures WHERE petition_id = %s"
        " AND receipt NOT LIKE 'starter-%%' ORDER BY accepted_at, id",
        [petition_id],
    )
    found: dict[str, list[str]] = {}
    for email, state in rows:
        found.setdefault(str(email), []).append(str(state))
    return found


def count(db: DB, petition_id: int) -> int:
    row = db.execute("SELECT signature_count FROM petitions WHERE id = %s", [petition_id]).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def sign(client: TestClient, petition: PetitionCard, email: str, ip: str) -> None:
    answer = client.post(
        f"/petitions/{petition.id}/signatures",
        json={"email": email, "name": "Ann"},
        headers={"x-forwarded-for": ip},
    )
    assert answer.status_code == 202, answer.text


def test_people_a_script_signed_for_from_one_ip_are_counted_when_they_sign_themselves(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    # Given a script that signed for five real supporters from one IP (the first passes the limits)
    petition = make_petition()
    app_settings = limited.settings.model_copy(update=BEHIND_PROXY)
    with TestClient(create_app(app_settings), client=(PROXY, 40000)) as client:
        for n in range(5):
            sign(client, petition, f"supporter{n}@example.org", "203.0.113.66")
        drain_everything(limited)
        assert count(db, petition.id) == 2  # the starter and the one that passed

        # When each supporter signs, from their own address
        for n in range(5):
            sign(client, petition, f"Supporter{n}@example.org", f"198.51.100.{n + 1}")
        drain_everything(limited)

    # Then the four kept out as fraudulent are now counted; the one the script got counted stays
    # counted once (its second signature is a duplicate)
    assert people(db, petition.id) == {
        "supporter0@example.org": ["validated"],
        **{f"supporter{n}@example.org": ["fraudulent", "validated"] for n in range(1, 5)},
    }
    assert count(db, petition.id) == 6
    duplicates = db.execute("SELECT count(*) FROM rejected_signatures WHERE reason = 'duplicate'").fetchone()
    assert duplicates == (1,)
    assert read_invariant(db).counts_match


def entry(n: int, receipt: str, petition_id: int, email: str, ip: str, *, honeypot: bool = False) -> Entry:
    payload = encode(
        receipt, petition_id, T0_MS + n * 1000, ip, SignatureFields(email, "Ann"), honeypot=honeypot
    )
    return Entry(0, f"{T0_MS + n}-0", payload)


def test_in_one_batch_a_fraudulent_entry_ahead_of_the_person_does_not_take_their_place(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    # Given one batch: the script's entries (a honeypot one, and one over the rate limit) ahead
    # of the two people's own, and then each person once more
    petition = make_petition()
    batch = [
        entry(0, "bot-0", petition.id, "filler@example.org", BOT),
        entry(1, "bot-ann", petition.id, "ann@example.org", BOT),  # over the burst limit
        entry(2, "bot-bo", petition.id, "bo@example.org", "c0ffee", honeypot=True),
        entry(3, "ann", petition.id, "ANN@example.org", "a1"),
        entry(4, "bo", petition.id, "bo+petition@example.org", "b2"),
        entry(5, "ann-again", petition.id, "ann@example.org", "a1"),
        entry(6, "bot-ann-late", petition.id, "ann@example.org", "c0ffee", honeypot=True),
    ]

    # When it is drained, twice (a redelivery after the commit changes nothing)
    limited.drainer.process(batch)
    limited.drainer.process(batch)

    # Then each person has one counted row; the uncounted rows before it stay for the record,
    # and the person's later entries (counted or not) are duplicates
    assert people(db, petition.id) == {
        "filler@example.org": ["validated"],
        "ann@example.org": ["fraudulent", "validated"],
        "bo@example.org": ["fraudulent", "validated"],
    }
    rejected = db.execute("SELECT receipt, reason FROM rejected_signatures ORDER BY receipt").fetchall()
    assert rejected == [("ann-again", "duplicate"), ("bot-ann-late", "duplicate")]
    assert count(db, petition.id) == 4
    assert read_invariant(db).counts_match


def test_a_redelivered_fraudulent_entry_is_not_stored_twice(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    petition = make_petition()
    first = [entry(0, "hp", petition.id, "cy@example.org", "c1", honeypot=True)]
    limited.drainer.process(first)
    limited.drainer.process(first)  # in a later batch, alone
    limited.drainer.process([*first, entry(1, "cy", petition.id, "cy@example.org", "c2")])
    assert people(db, petition.id) == {"cy@example.org": ["fraudulent", "validated"]}
    assert db.execute("SELECT count(*) FROM rejected_signatures").fetchone() == (0,)
    assert count(db, petition.id) == 2


def test_an_invalidated_signature_does_not_keep_the_person_from_signing_again(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    petition = make_petition()
    limited.drainer.process([entry(0, "first", petition.id, "dee@example.org", "d1")])
    invalidate(db, Criteria(petition.id, email="dee@example.org"))
    assert count(db, petition.id) == 1

    limited.drainer.process([entry(100, "again", petition.id, "dee@example.org", "d1")])

    assert people(db, petition.id) == {"dee@example.org": ["invalidated", "validated"]}
    assert count(db, petition.id) == 2
    assert find_drift(db) == []


def test_export_reconcile_and_forget_are_exact_with_several_rows_per_person(
    limited: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    # Given a person with a fraudulent, an invalidated and a counted row, and another person
    petition = make_petition()
    limited.drainer.process([entry(0, "hp", petition.id, "eve@example.org", "e0", honeypot=True)])
    limited.drainer.process([entry(1, "one", petition.id, "eve@example.org", "e1")])
    invalidate(db, Criteria(petition.id, email="eve@example.org"))
    limited.drainer.process([entry(200, "two", petition.id, "eve@example.org", "e1")])
    limited.drainer.process([entry(201, "fay", petition.id, "fay@example.org", "f1")])
    assert people(db, petition.id)["eve@example.org"] == ["fraudulent", "invalidated", "validated"]

    # Then the export lists her once, the count has no drift
    out = io.StringIO()
    assert export_csv(db, petition.id, out, include_email=True) == 3  # starter, eve, fay
    assert out.getvalue().count("eve@example.org") == 1
    assert find_drift(db) == []

    # And forgetting her erases every row and takes exactly one off the count
    forgotten = forget(db, "Eve@example.org")
    assert forgotten.signatures == 3
    assert forgotten.counts == {petition.id: 2}
    assert "eve@example.org" not in people(db, petition.id)
    erased = db.execute("SELECT receipt FROM rejected_signatures WHERE reason = 'erased' ORDER BY receipt")
    assert [r for (r,) in erased] == ["hp", "one", "two"]
    assert find_drift(db) == []
