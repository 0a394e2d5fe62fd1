"""The full path: HTTP -> Redis -> the real drain loop -> PostgreSQL, with real servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import psycopg
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import backlog, read_invariant
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.pipeline.plan import plan_batch
from worker.runtime import Runtime
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def post(client: TestClient, petition_id: int, email: str, name: str = "Ann", **extra: object) -> str:
    response = client.post(
        f"/petitions/{petition_id}/signatures", json={"email": email, "name": name, **extra}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["receipt"])


def count(db: DB, sql: str, *params: object) -> int:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def test_signatures_travel_from_http_to_postgres_counted_once(
    client: TestClient, make_petition: PetitionFactory, drain: Callable[[], int], db: DB
) -> None:
    petition = make_petition()
    receipts = [post(client, petition.id, f"signer{n}@example.org", opt_in=n % 2 == 0) for n in range(25)]
    drain()
    stored = {
        r for (r,) in db.execute("SELECT receipt FROM signatures WHERE petition_id = %s", [petition.id])
    }
    assert stored == {*receipts, f"starter-{petition.id}"}
    assert count(db, "SELECT signature_count FROM petitions WHERE id = %s", petition.id) == 26
    assert client.get(f"/petitions/{petition.id}").json()["signature_count"] == 26
    assert (
        client.get(f"/petitions/{petition.id}").json()["call_to_action"]
        == "Join Clara and 25 supporters today."
    )
    assert count(db, "SELECT count(*) FROM signatures WHERE opt_in") == 13


def test_duplicates_by_case_dots_and_tags_across_batches_and_shards_count_once(
    client: TestClient, make_petition: PetitionFactory, drain: Callable[[], int], db: DB, rt: Runtime
) -> None:
    petition = make_petition()
    first = post(client, petition.id, "Ann.Lee@gmail.com")
    drain()
    variants = [
        "annlee@gmail.com",
        "ANN.LEE+petition@googlemail.com",
        "a.n.n.l.e.e@GMAIL.com",
        "annlee+x@gmail.com",
    ]
    assert len({rt.keys.shard_for_email(v) for v in variants}) > 1, "variants should span shards"
    later = [post(client, petition.id, v) for v in variants]
    drain()
    assert count(db, "SELECT count(*) FROM signatures WHERE petition_id = %s", petition.id) == 2
    assert count(db, "SELECT signature_count FROM petitions WHERE id = %s", petition.id) == 2
    assert count(db, "SELECT duplicate_count FROM petitions WHERE id = %s", petition.id) == 4
    dup_receipts = {
        r for (r,) in db.execute("SELECT receipt FROM rejected_signatures WHERE reason = 'duplicate'")
    }
    assert dup_receipts == set(later)
    assert count(db, "SELECT count(*) FROM signatures WHERE receipt = %s", first) == 1


def test_invalid_emails_land_in_rejected_signatures_with_the_reason(
    client: TestClient, make_petition: PetitionFactory, drain: Callable[[], int], db: DB
) -> None:
    petition = make_petition()
    bad = post(client, petition.id, "someone@localhost")
    good = post(client, petition.id, "someone@example.org")
    drain()
    reason, detail = db.execute(
        "SELECT reason, detail FROM rejected_signatures WHERE receipt = %s", [bad]
    ).fetchone()  # type: ignore[misc]
    assert reason == "invalid_email" and detail
    assert count(db, "SELECT count(*) FROM signatures WHERE receipt = %s", good) == 1
    assert count(db, "SELECT signature_count FROM petitions WHERE id = %s", petition.id) == 2


def test_redelivering_an_already_processed_entry_changes_nothing(
    make_petition: PetitionFactory, rt: Runtime, db: DB
) -> None:
    petition = make_petition()
    payloads = [
        encode(f"r{n}", petition.id, 1_790_000_000_000, None, SignatureFields(f"p{n}@example.org", "P"))
        for n in range(5)
    ]
    payloads.append(
        encode("dup", petition.id, 1_790_000_000_000, None, SignatureFields("P0@example.org", "P"))
    )
    payloads.append(encode("bad", petition.id, 1_790_000_000_000, None, SignatureFields("x@localhost", "P")))
    rt.streams.ensure_groups()
    for p in payloads:
        rt.redis.xadd(rt.keys.stream(0), {"s": p})
    entries = rt.streams.read("c1", 100, 10)
    first = rt.drainer.process(entries)
    before = read_invariant(db)
    again = rt.drainer.process(entries)  # the same entries, as after a crash before XACK
    assert read_invariant(db) == before
    assert sum(first.outcome.persisted.values()) == 5 and sum(again.outcome.persisted.values()) == 0
    assert sum(again.outcome.duplicates.values()) == 0 and not again.outcome.rejected
    assert count(db, "SELECT signature_count FROM petitions WHERE id = %s", petition.id) == 6
    assert before.counts_match and before.duplicate_receipts == 0


def test_count_equals_rows_after_every_batch(
    client: TestClient, make_petition: PetitionFactory, rt: Runtime, db: DB
) -> None:
    petitions = [make_petition(title=f"P{n}") for n in range(3)]
    rt.streams.ensure_groups()
    for n in range(300):
        post(client, petitions[n % 3].id, f"user{n % 250}@example.org")
    rt.drainer.config = replace(rt.drainer.config, batch_size=40)
    batches = 0
    while any(backlog(rt)):
        if rt.drainer.step():
            batches += 1
            assert read_invariant(db).counts_match
    assert batches >= 5
    assert count(db, "SELECT sum(signature_count) FROM petitions") == 3 + 300 - count(
        db, "SELECT count(*) FROM rejected_signatures WHERE reason = 'duplicate'"
    )


def test_hostile_names_are_stored_or_rejected_one_by_one_never_failing_the_batch(
    make_petition: PetitionFactory, rt: Runtime, db: DB, drain: Callable[[], int]
) -> None:
    petition = make_petition()
    names = {
        "ok-rtl": "مريم ‏العلي",
        "ok-emoji": "Zoë 🏳️‍🌈",
        "ok-cjk": "山田太郎",
        "bad-nul": "Ann\x00Lee",
        "bad-bell": "Ann\x07",
        "bad-esc": "\x1b[31mred",
    }
    rt.streams.ensure_groups()
    for receipt, name in names.items():
        raw = b'{"r":"%s","p":%d,"t":1790000000000,"f":{"email":"%s@example.org","name":"%s"}}' % (
            receipt.encode(),
            petition.id,
            receipt.encode(),
            name.encode()
            .replace(b"\x00", b"\\u0000")
            .replace(b"\x07", b"\\u0007")
            .replace(b"\x1b", b"\\u001b"),
        )
        rt.redis.xadd(rt.keys.stream(0), {"s": raw})
    rt.redis.xadd(
        rt.keys.stream(0),
        {
            "s": b'{"r":"lone","p":%d,"t":1790000000000,"f":{"email":"l@example.org","name":"\xed\xa0\x80"}}'
            % petition.id
        },
    )
    rt.drainer.step()
    stored = {
        r: n for r, n in db.execute("SELECT receipt, name FROM signatures WHERE receipt NOT LIKE 'starter%%'")
    }
    assert stored == {k: v for k, v in names.items() if k.startswith("ok")}
    rejected = {r: reason for r, reason in db.execute("SELECT receipt, reason FROM rejected_signatures")}
    assert rejected == {"bad-nul": "invalid_field", "bad-bell": "invalid_field", "bad-esc": "invalid_field"}
    assert backlog(rt) == (0, 1), "the undecodable entry stays pending for retry"


def test_a_batch_redelivered_after_a_crash_before_publishing_still_publishes_the_count(
    make_petition: PetitionFactory, rt: Runtime, db: DB
) -> None:
    petition = make_petition()
    rt.streams.ensure_groups()
    for n in range(3):
        payload = encode(
            f"r{n}", petition.id, 1_790_000_000_000, None, SignatureFields(f"p{n}@example.org", "P")
        )
        rt.redis.xadd(rt.keys.stream(0), {"s": payload})
    entries = rt.streams.read("c1", 100, 10)
    rt.drainer.store.write(plan_batch(entries, rt.drainer.emails))
    # The worker died after the commit, before XACK and before publishing: the registry is stale.
    assert rt.registry.get(petition.id).signature_count == 1  # type: ignore[union-attr]
    rt.drainer.process(entries)
    assert rt.registry.get(petition.id).signature_count == 4  # type: ignore[union-attr]
    assert backlog(rt) == (0, 0)
