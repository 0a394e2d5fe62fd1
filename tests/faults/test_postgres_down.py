"""Fault 3: PostgreSQL goes down during a spike (a crash: `pg_ctl stop -m immediate`).

The intake never touches PostgreSQL, so it keeps answering 202. The workers' batches fail with
`RetryLater`, stay pending and unacknowledged, and are retried after a backoff; the worker
processes stay up and do not spin. When PostgreSQL is back the backlog drains.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    Background,
    Load,
    PrivatePostgres,
    Worker,
    assert_invariant,
    children,
    cpu_seconds,
    fault_settings,
    intake,
    stored_receipts,
    wait_drained,
)
from tests.helpers import backlog, wait_for
from worker.db.migrate import upgrade
from worker.keys import CONSUMER_GROUP
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 6.0


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.init()
    server.start()
    yield server
    server.close()


@pytest.fixture
def database_url(private_postgres: PrivatePostgres) -> str:
    """This module's tests run on a PostgreSQL of their own, which they stop."""
    url = private_postgres.admin_url()
    upgrade(Settings.from_env({}, database_url=url).sqlalchemy_url)
    return url


def acknowledged(rt: Runtime) -> int:
    """Entries the consumer group has read and acknowledged, over every shard."""
    total = 0
    for stream in rt.keys.streams():
        if rt.redis.exists(stream):
            group = next(g for g in rt.redis.xinfo_groups(stream) if g["name"].decode() == CONSUMER_GROUP)
            total += int(group["entries-read"] or 0) - int(group["pending"])
    return total


def rate(load: Load, since: int, until: int) -> float:
    """Submissions answered per second of time spent waiting for answers, from the `since`-th
    to the `until`-th."""
    return (until - since) / max(1e-3, sum(load.latencies[since:until]))


def test_postgres_down_during_a_spike_the_intake_keeps_accepting_and_workers_wait_it_out(
    private_postgres: PrivatePostgres,
    settings: Settings,
    make_petition: PetitionFactory,
    rt: Runtime,
    database_url: str,
) -> None:
    s = fault_settings(settings)
    petition = make_petition()
    load = Load()
    worker = Worker(s, "p", concurrency=2)
    logs: list[str] = []
    try:
        with intake(s) as client, Background(client, petition.id, load):
            with psycopg.connect(database_url, autocommit=True) as db:
                wait_for(lambda: len(stored_receipts(db)[0]) >= 100, timeout=40)
            before_stop = len(load.statuses)
            time.sleep(1.0)
            pool = children(worker.pid)
            # When PostgreSQL crashes in the middle of it
            during_start = len(load.statuses)
            private_postgres.stop("immediate")
            down_at = time.monotonic()
            time.sleep(1.0)  # a batch committed just before the crash may still be acknowledged
            acked, cpu = acknowledged(rt), cpu_seconds([worker.pid, *pool])
            time.sleep(OUTAGE_SECONDS - 1.0)
            # Then the workers acknowledged nothing, stayed up, and did not spin
            assert acknowledged(rt) == acked, "a batch was acknowledged while PostgreSQL was down"
            used = cpu_seconds([worker.pid, *pool]) - cpu
            assert worker.poll() is None and children(worker.pid) == pool, "a worker process died"
            assert used < 0.25 * (OUTAGE_SECONDS - 1.0), f"workers used {used:.1f} s CPU while waiting"
            assert sum(backlog(rt)) > 0
            # And the intake answered 202 to everything, about as fast as in the second before the
            # crash (that second alone: a baseline that took in the outage would let an intake
            # that slowed eightfold pass)
            during_end = len(load.statuses)
            during = load.statuses[during_start:during_end]
            assert during and set(during) == {202}
            assert during_start > before_stop, "nothing was submitted in the second before the crash"
            baseline = rate(load, before_stop, during_start)
            outage = rate(load, during_start, during_end)
            assert outage > 0.5 * baseline, f"{outage:.0f}/s during the outage, {baseline:.0f}/s before"
            private_postgres.start()
            down_for = time.monotonic() - down_at
            time.sleep(1.0)
        with psycopg.connect(database_url, autocommit=True) as db:
            wait_drained(db, rt, load.receipts)
    finally:
        logs.append(worker.stop())
    with psycopg.connect(database_url, autocommit=True) as db:
        assert_invariant(db, rt, load.receipts, logs)
    assert set(load.statuses) == {202}
    assert "raised unexpected" not in logs[0], "a drain task failed instead of backing off"
    # Each pool process backed off exponentially (0.25 s doubling, jittered, up to
    # DB_RETRY_MAX_SECONDS) through the whole outage rather than restarting with every slice.
    most = s.db_retry_max_seconds
    per_process = math.log2(most / 0.25) + 1 + down_for / (most / 2) + 1
    attempts = logs[0].count("backing off")
    assert 0 < attempts <= 2 * per_process, f"{attempts} retries in {down_for:.1f} s"
