"""The Redis primary is lost (SIGKILL, as a lost machine) under steady load, with Sentinels to
promote its replica; and a replica that stops replicating.

With ACK_DURABILITY=replica every signature answered 202 was on the replica before the answer,
so the promotion loses none; with `local` the test records how many it lost (asynchronous
replication: the reason the `replica` mode exists). Throughout, the intake answers 503 with
Retry-After while it cannot keep its promise, never 500, and 202 again within seconds; the
worker, blocked mid-batch across the failover, commits what it held exactly once.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Background,
    Load,
    Worker,
    assert_invariant,
    fault_settings,
    intake,
    petition_row_locked,
    stored_receipts,
    unfinished_receipts,
    wait_drained,
)
from tests.faults.sentinel import MASTER, SentinelCluster, in_sync
from tests.helpers import Child, backlog, read_invariant, settings_env, start_worker, stop_process, wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow

RECOVERY_SECONDS = 10.0
# How long the replicas are behind before the primary is lost: on loopback replication is
# otherwise so quick that `local` would rarely lose anything in a test, though it does on a
# network (one real run: 51 of 9,315 lost).
REPLICAS_BEHIND_SECONDS = 0.3


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    """A primary, one replica and three Sentinels."""
    ha = SentinelCluster(replicas=1)
    try:
        ha.start()
        yield ha
    finally:
        ha.close()


@pytest.fixture
def redis_url(cluster: SentinelCluster) -> str:
    """Petitions are registered on the first primary directly; everything else goes through
    the Sentinels."""
    return f"redis://127.0.0.1:{cluster.nodes[0].port}/0"


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"  # the cluster is thrown away whole


def through_sentinels(settings: Settings, cluster: SentinelCluster, mode: str) -> Settings:
    return fault_settings(
        settings, redis_sentinels=cluster.sentinel_list, redis_sentinel_master=MASTER, ack_durability=mode
    )


def answered_between(load: Load, start: float, end: float) -> list[int]:
    """Statuses of the requests sent after `start` and answered before `end` (monotonic)."""
    return [
        s
        for s, (sent, answered) in zip(load.statuses, load.spans, strict=True)
        if sent > start and answered < end
    ]


def first_202_after(load: Load, moment: float) -> float:
    return min(
        answered
        for s, (sent, answered) in zip(load.statuses, load.spans, strict=True)
        if s == 202 and sent > moment
    )


def what_is_left(db: DB, ha: Runtime, load: Load) -> str:
    """Why a wait for the drain ended: the backlog and the receipts not stored."""
    signed, rejected = stored_receipts(db)
    missing = set(load.receipts) - set(signed + rejected)
    unfinished = len(unfinished_receipts(ha) & missing)
    return f"backlog {backlog(ha)}; {len(missing)} of {len(load.receipts)} unstored, {unfinished} in Redis"


def lose_the_primary_under_load(
    s: Settings, cluster: SentinelCluster, petition_id: int, database_url: str, db: DB, ha: Runtime
) -> tuple[Load, float, list[str]]:
    """Steady load; a worker blocked mid-batch (its petition row locked) holds entries read
    from the primary; the replica falls behind (it stops replicating), then the primary is
    SIGKILLed, the replica promoted, and the lost machine replaced by a new replica.
    Returns the load, the promotion time and the worker's log."""
    load = Load()
    worker = Worker(s, "f", concurrency=2)
    try:
        with intake(s) as client, Background(client, petition_id, load):
            with petition_row_locked(database_url, petition_id):
                wait_for(lambda: len(load.receipts) >= 300, timeout=60)
                assert stored_receipts(db) == ([], [])  # everything accepted is in Redis only
                old = cluster.primary()
                for node in cluster.nodes:
                    if node is not old:
                        node.stop_replicating()
                time.sleep(REPLICAS_BEHIND_SECONDS)
                old.kill()
                promoted_at = cluster.wait_promoted(old)
                # The operator replaces the lost machine with a replica of the new primary (left
                # to the Sentinels, a returning old primary is reconfigured only after ~8 s)
                old.start(replica_of=cluster.primary().port)
            accepted = len(load.receipts)
            wait_for(lambda: len(load.receipts) >= accepted + 200, timeout=60)
        wait_for(lambda: backlog(ha) == (0, 0), timeout=90, interval=0.2)
    finally:
        logs = [worker.stop()]
    return load, promoted_at, logs


def test_replica_acknowledged_signatures_survive_the_loss_of_the_primary(
    cluster: SentinelCluster, settings: Settings, make_petition: PetitionFactory, db: DB, database_url: str
) -> None:
    s = through_sentinels(settings, cluster, "replica")
    ha = Runtime(s)
    petition = make_petition()
    # When the primary is lost under load
    load, promoted_at, logs = lose_the_primary_under_load(s, cluster, petition.id, database_url, db, ha)
    # Then every signature answered 202 is stored exactly once, and the counts are exact
    assert_invariant(db, ha, load.receipts, logs, refused=load.refused_emails)
    # And the intake took 202s again within seconds of the promotion
    assert first_202_after(load, promoted_at) - promoted_at < RECOVERY_SECONDS
    # And whatever it refused meanwhile was a 503 with Retry-After, never a 500, and no answer
    # took longer than a request body may
    assert load.refused and all(status == 503 and retry for status, retry in load.refused)
    print(f"slowest answer through the failover: {max(load.latencies):.2f} s")
    assert max(load.latencies) < s.body_timeout_seconds


def test_locally_acknowledged_signatures_can_be_lost_with_the_primary(
    cluster: SentinelCluster,
    settings: Settings,
    make_petition: PetitionFactory,
    db: DB,
    database_url: str,
    record_property: pytest.RecordProperty,
) -> None:
    s = through_sentinels(settings, cluster, "local")
    ha = Runtime(s)
    petition = make_petition()
    load, promoted_at, logs = lose_the_primary_under_load(s, cluster, petition.id, database_url, db, ha)
    signed, rejected = stored_receipts(db)
    lost = set(load.receipts) - set(signed + rejected)
    # Recorded, not asserted: asynchronous replication may lose what the replica had not got
    record_property("acknowledged_lost_with_local", len(lost))
    print(f"ACK_DURABILITY=local: {len(lost)} of {len(load.receipts)} acknowledged signatures lost")
    # What survived is stored exactly once and counted exactly
    assert len(signed + rejected) == len(set(signed + rejected)) and not set(signed + rejected) - set(
        load.receipts
    )
    assert read_invariant(db).counts_match, "\n".join(logs)
    assert first_202_after(load, promoted_at) - promoted_at < RECOVERY_SECONDS
    assert all(status == 503 and retry for status, retry in load.refused)


def test_a_replica_that_stops_replicating_turns_202s_into_503s_until_it_returns(
    cluster: SentinelCluster, settings: Settings, make_petition: PetitionFactory, db: DB
) -> None:
    s = through_sentinels(settings, cluster, "replica")
    ha = Runtime(s)
    petition = make_petition()
    load = Load()
    replica = cluster.replica()
    worker = Worker(s, "p", concurrency=2)
    try:
        with intake(s) as client, Background(client, petition.id, load):
            wait_for(lambda: len(load.receipts) >= 100, timeout=60)
            # When the replica stops (SIGSTOP: alive to the kernel, silent to the primary)
            stopped_at = time.monotonic()
            replica.signal(signal.SIGSTOP)
            time.sleep(3.5)
            degraded = client.get("/readyz")
            resumed_at = time.monotonic()
            replica.signal(signal.SIGCONT)
            accepted = len(load.receipts)
            wait_for(lambda: len(load.receipts) >= accepted + 100, timeout=30)
        wait_drained(db, ha, load.receipts, timeout=60)
    finally:
        logs = [worker.stop()]
    # Then while it was stopped the intake refused with 503, never an unsafe 202
    during = answered_between(load, stopped_at, resumed_at)
    assert len(during) >= 3 and set(during) == {503}
    assert degraded.status_code == 503 and degraded.json()["durability"]["holds"] is False
    # And took 202s again once it came back
    assert first_202_after(load, resumed_at) - resumed_at < RECOVERY_SECONDS
    assert_invariant(db, ha, load.receipts, logs, refused=load.refused_emails)


def test_beat_and_the_reminders_worker_carry_on_across_a_failover(
    cluster: SentinelCluster, settings: Settings, db: DB, tmp_path: Path
) -> None:
    # Given beat (every second) and a reminders worker, both on the Celery broker through the
    # Sentinels
    s = through_sentinels(settings, cluster, "local").model_copy(update={"reminder_every": 1.0})
    worker = start_worker(s, f"rf{uuid.uuid4().hex[:8]}", concurrency=1, queues="reminders")
    beat = Child(
        [sys.executable, "-m", "celery", "-A", "worker", "beat", "--schedule", str(tmp_path / "beat"),
         "--loglevel", "INFO"],
        env=settings_env(s),
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: worker.output().count("succeeded in") >= 2, timeout=60)
        # When the primary is lost and the replica promoted
        old = cluster.primary()
        old.kill()
        cluster.wait_promoted(old)
        done_at_promotion = worker.output().count("succeeded in")
        # Then runs keep being scheduled and run, with neither process restarted
        wait_for(lambda: worker.output().count("succeeded in") >= done_at_promotion + 3, timeout=60)
        assert beat.poll() is None and worker.poll() is None
    finally:
        beat_output = stop_process(beat)
        stop_process(worker)
    assert "reminders.send_due" in beat_output, beat_output[-2000:]


def test_a_primary_demoted_while_alive_is_left_for_the_new_one(
    cluster: SentinelCluster, settings: Settings, make_petition: PetitionFactory, db: DB
) -> None:
    """`SENTINEL FAILOVER`: the old primary lives on as a replica, so connections still open to
    it get READONLY; they must be dropped for the new primary, not surface as errors."""
    s = through_sentinels(settings, cluster, "replica")
    ha = Runtime(s)
    petition = make_petition()
    load = Load()
    worker = Worker(s, "d", concurrency=2)
    try:
        with intake(s) as client, Background(client, petition.id, load):
            wait_for(lambda: len(load.receipts) >= 200, timeout=60)
            old = cluster.primary()
            # When the Sentinels hand the primary's role to the replica
            cluster.sentinels[0].failover()
            cluster.wait_promoted(old)
            # (the Sentinels make the old primary a replica of the new one ~8 s later; until
            # then `replica` has no replica to confirm and answers 503)
            wait_for(lambda: in_sync(old), timeout=60)
            attached_at = time.monotonic()
            accepted = len(load.receipts)
            wait_for(lambda: len(load.receipts) >= accepted + 200, timeout=60)
        try:
            wait_drained(db, ha, load.receipts, timeout=60)
        except AssertionError:
            raise AssertionError(f"{what_is_left(db, ha, load)}\n{worker.output()[-6000:]}") from None
    finally:
        logs = [worker.stop()]
    # Then the intake and the worker moved to the new primary: 202s within seconds of it having
    # a replica, every refusal a 503 with Retry-After, every accepted signature stored once
    assert first_202_after(load, attached_at) - attached_at < RECOVERY_SECONDS
    assert all(status == 503 and retry for status, retry in load.refused)
    assert_invariant(db, ha, load.receipts, logs, refused=load.refused_emails)
