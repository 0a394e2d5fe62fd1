"""Reconciliation: drift reported and repaired, and never a double count while batches commit."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from tests.conftest import PetitionFactory
from tests.helpers import backlog, read_invariant, start_worker, stop_process, wait_for
from tests.worker.integrity.helpers import DB, add_signatures, signature_count, validated
from worker.drain.store import ADD_COUNTS, LOCK_PETITIONS
from worker.integrity.db import settle
from worker.integrity.reconcile import LOCK_FOR_REPAIR, SET_COUNT, Drift, find_drift, reconcile, repair
from worker.ops.cli import main
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime
from worker.settings import Settings


def test_every_drift_is_reported_and_fix_repairs_and_publishes_it(
    make_petition: PetitionFactory, db: DB, rt: Runtime
) -> None:
    a, b, c = make_petition(title="A"), make_petition(title="B"), make_petition(title="C")
    add_signatures(db, a.id, 5, tag="a")
    add_signatures(db, b.id, 5, tag="b", counted=False)  # rows the count missed
    db.execute("UPDATE petitions SET signature_count = signature_count + 3 WHERE id = %s", [c.id])

    assert reconcile(db, fix=False) == [Drift(b.id, 1, 6), Drift(c.id, 4, 1)]
    assert signature_count(db, b.id) == 1, "a report alone changes nothing"

    fixed = reconcile(db, fix=True, publish=rt.registry.set_counts)
    assert fixed == [Drift(b.id, 1, 6, fixed=True), Drift(c.id, 4, 1, fixed=True)]
    assert find_drift(db) == [] and read_invariant(db).counts_match
    assert [rt.registry.get(p.id).signature_count for p in (a, b, c)] == [1, 6, 1]  # type: ignore[union-attr]


def test_the_command_exits_1_on_unrepaired_drift_and_0_after_fix(
    make_petition: PetitionFactory, db: DB, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    petition = make_petition()
    assert main(["reconcile"]) == 0
    db.execute("UPDATE petitions SET signature_count = 9 WHERE id = %s", [petition.id])
    assert main(["reconcile"]) == 1
    assert f"petition {petition.id}: recorded 9, validated 1 (+8), not repaired" in capsys.readouterr().out
    assert main(["reconcile", "--fix"]) == 0
    assert "repaired" in capsys.readouterr().out
    assert signature_count(db, petition.id) == 1


def writer_inserts(conn: psycopg.Connection[tuple[object, ...]], petition_id: int, n: int) -> None:
    """The batch writer's first half (worker/drain/store.py): rows in, counts not yet added."""
    conn.execute(
        """INSERT INTO signatures (petition_id, receipt, email, canonical_email, name, accepted_at)
           SELECT %s, 'w' || g, 'w' || g || '@example.org', 'w' || g || '@example.org', 'W', now()
           FROM generate_series(1, %s) g""",
        [petition_id, n],
    )


def writer_counts(conn: psycopg.Connection[tuple[object, ...]], petition_id: int, n: int) -> None:
    """The batch writer's second half: lock in id order, add +n (the store's own statements)."""
    conn.execute(LOCK_PETITIONS, [[petition_id]])
    conn.execute(ADD_COUNTS, [[petition_id], [n], [0], [0]])


def test_a_repair_waits_for_a_batch_already_writing_and_counts_its_rows_once(
    make_petition: PetitionFactory, db: DB, database_url: str
) -> None:
    petition = make_petition()
    db.execute("UPDATE petitions SET signature_count = 50 WHERE id = %s", [petition.id])  # drift
    with psycopg.connect(database_url) as writer:
        writer_inserts(writer, petition.id, 4)  # in flight, uncommitted
        result: list[Drift] = []
        with psycopg.connect(database_url, autocommit=True) as conn:
            repairing = threading.Thread(target=lambda: result.append(repair(conn, petition.id)))
            repairing.start()
            time.sleep(0.5)
            assert repairing.is_alive(), "the repair waits for the batch that is writing"
            writer_counts(writer, petition.id, 4)  # must not deadlock behind the waiting repair
            writer.commit()
            repairing.join(10)
    assert result == [Drift(petition.id, 54, 5, fixed=True)]
    assert signature_count(db, petition.id) == 5 == validated(db, petition.id)


def waits_on_a_lock(db: DB, backend_pid: int) -> bool:
    """PostgreSQL shows that backend blocked waiting for a lock (a row or a transaction's)."""
    row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [backend_pid]).fetchone()
    return row is not None and row[0] == "Lock"


def test_a_batch_that_starts_during_a_repair_adds_to_the_repaired_count(
    make_petition: PetitionFactory, db: DB, database_url: str
) -> None:
    petition = make_petition()
    db.execute("UPDATE petitions SET signature_count = 50 WHERE id = %s", [petition.id])
    with psycopg.connect(database_url) as repairer, psycopg.connect(database_url) as writer:
        # The repair's own statements, held open before its commit.
        repairer.execute(LOCK_FOR_REPAIR, [petition.id])
        repairer.execute(SET_COUNT, [1, petition.id])
        done = threading.Event()

        def batch() -> None:
            writer_inserts(writer, petition.id, 4)
            writer_counts(writer, petition.id, 4)
            writer.commit()
            done.set()

        backend = writer.info.backend_pid
        writing = threading.Thread(target=batch)
        writing.start()
        # The batch has started and is blocked on the repair's lock (not merely not yet begun)
        deadline = time.monotonic() + 10
        while not waits_on_a_lock(db, backend) and writing.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waits_on_a_lock(db, backend), "the batch should be waiting for the repair's lock"
        assert not done.is_set()
        repairer.commit()
        writing.join(10)
    assert done.is_set()
    assert signature_count(db, petition.id) == 5 == validated(db, petition.id)


SPIKE = 12_000
UNIQUE = 9_000  # entries past this repeat earlier signers on the same petition: duplicates


@pytest.mark.slow
def test_drift_injected_during_a_spike_is_repaired_without_double_counting(
    settings: Settings, make_petition: PetitionFactory, db: DB, rt: Runtime
) -> None:
    petitions = [make_petition(title=f"P{n}").id for n in range(3)]
    expected = {p: 1 + UNIQUE // 3 for p in petitions}  # the starter and the unique signers
    rt.streams.ensure_groups()
    with rt.redis.pipeline(transaction=False) as pipe:
        for n in range(SPIKE):
            email = f"s{n % UNIQUE}@example.org"
            payload = encode(
                f"k{n}", petitions[n % 3], 1_790_000_000_000 + n, None, SignatureFields(email, "S")
            )
            pipe.xadd(rt.keys.stream(rt.keys.shard_for_email(email)), {"s": payload})
        pipe.execute()
    spike = settings.model_copy(update={"batch_size": 50, "drain_slice_seconds": 1.0})
    worker = start_worker(spike, f"r{uuid.uuid4().hex[:8]}", concurrency=2)
    repairs_mid_spike = 0
    try:
        wait_for(lambda: sum(validated(db, p) for p in petitions) > 3, timeout=60)  # type: ignore[misc]
        while any(backlog(rt)):
            victim = petitions[repairs_mid_spike % 3]
            db.execute("UPDATE petitions SET signature_count = signature_count + 7 WHERE id = %s", [victim])
            drifts = reconcile(db, fix=True, publish=rt.registry.set_counts)
            # Only the injected drift is ever found, and it is repaired to the rows then committed.
            assert [(d.petition_id, d.recorded - d.actual, d.fixed) for d in drifts] == [(victim, 7, True)]
            if 1 < drifts[0].actual < expected[victim]:
                repairs_mid_spike += 1
            assert find_drift(db) == []  # later batches bring their rows and counts together
            time.sleep(0.01)
    finally:
        output = stop_process(worker)
    assert repairs_mid_spike >= 5, (repairs_mid_spike, output[-2000:])
    assert find_drift(db) == [] and read_invariant(db).counts_match
    assert {p: signature_count(db, p) for p in petitions} == expected
    duplicates = db.execute("SELECT count(*) FROM rejected_signatures WHERE reason = 'duplicate'").fetchone()
    assert duplicates == (SPIKE - UNIQUE,)
    # A batch that committed just before a repair may publish its inflated count after it:
    # settling once more leaves every live count right.
    settle(db, petitions, rt.registry.set_counts, grace_seconds=1.0)
    for p in petitions:
        card = rt.registry.get(p)
        assert card is not None and card.signature_count == expected[p]


def test_settle_puts_right_a_stale_count_published_after_an_operator_lowered_it(
    make_petition: PetitionFactory, db: DB, rt: Runtime
) -> None:
    petition = make_petition()
    add_signatures(db, petition.id, 9, tag="s")
    db.execute("UPDATE petitions SET signature_count = 4 WHERE id = %s", [petition.id])  # lowered
    rt.registry.set_counts({petition.id: 4})
    rt.registry.raise_counts({petition.id: 10})  # a batch committed before, publishing late
    waited: list[float] = []
    settle(db, [petition.id], rt.registry.set_counts, 0.25, sleep=waited.append)
    card = rt.registry.get(petition.id)
    assert waited == [0.25] and card is not None and card.signature_count == 4
    rt.registry.raise_counts({petition.id: 3})  # and an even older one is ignored from there on
    assert rt.registry.get(petition.id).signature_count == 4  # type: ignore[union-attr]
