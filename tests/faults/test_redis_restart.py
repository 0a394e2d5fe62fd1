"""Fault 5: Redis dies (SIGKILL) mid-spike and comes back from its append-only file
(`appendonly yes`, `appendfsync everysec`).

While it is down the intake answers 503 with `Retry-After`, never 202; clients retry with their
idempotency key. Every entry answered 202 before the crash is in the AOF (Redis writes the AOF
before it replies; `everysec` only delays the fsync, which matters for an OS crash or power
loss, not a process crash: see docs/reliability.md), so after the restart it is drained and
stored, and so is everything accepted after it.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Background,
    Load,
    PrivateRedis,
    Worker,
    assert_invariant,
    fault_settings,
    intake,
    petition_row_locked,
    stored_receipts,
    wait_drained,
)
from tests.helpers import backlog, wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    """This module's test runs on a Redis of its own, which it kills."""
    return private_redis.url


def answers(rt: Runtime) -> bool:
    try:
        return bool(rt.redis.ping())
    except (redis.ConnectionError, redis.BusyLoadingError):
        return False


def test_redis_killed_and_restarted_from_its_aof_keeps_every_accepted_signature(
    private_redis: PrivateRedis,
    settings: Settings,
    make_petition: PetitionFactory,
    rt: Runtime,
    db: DB,
    database_url: str,
) -> None:
    s = fault_settings(settings)
    petition = make_petition()
    load = Load()
    worker = Worker(s, "r", concurrency=2)
    try:
        with intake(s) as client, Background(client, petition.id, load):
            with petition_row_locked(database_url, petition.id):
                # Given accepted signatures that exist only in Redis (PostgreSQL is locked)
                wait_for(lambda: len(load.receipts) >= 300, timeout=30)
                assert sum(backlog(rt)) > 0 and stored_receipts(db) == ([], [])
                accepted_before = len(load.receipts)
                # When Redis is killed (the workers' batch commits while it is down)
                killed_at = time.monotonic()
                private_redis.kill()
                time.sleep(1.0)
            time.sleep(1.5)
            restarted_at = time.monotonic()
            private_redis.start()
            wait_for(lambda: answers(rt), timeout=10)
            wait_for(lambda: len(load.receipts) >= accepted_before + 200, timeout=30)
        wait_drained(db, rt, load.receipts, timeout=50)
    finally:
        logs = [worker.stop()]
    # Then everything answered 202, before or after the crash, is stored exactly once
    assert_invariant(db, rt, load.receipts, logs)
    # And while Redis was down the intake said 503 with Retry-After, and never 202
    during = [
        status
        for status, (sent, answered) in zip(load.statuses, load.spans, strict=True)
        if sent > killed_at and answered < restarted_at
    ]
    assert len(during) >= 5 and set(during) == {503}
    assert load.refused and all(status == 503 and retry for status, retry in load.refused)
