"""Redis full (`maxmemory` reached, `noeviction`): the intake refuses with 503, never 500, and
loses nothing it accepted; workers started afterwards drain their way out on their own.

Redis refuses every write that may grow memory once over `maxmemory`, and a worker needs a few
(Celery's broker bookkeeping, leases, counts): the intake leaves `REDIS_MEMORY_HEADROOM` of it
free for them, and the worker's acknowledgements and trims then free the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress

import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Load,
    PrivateRedis,
    Worker,
    assert_invariant,
    fault_settings,
    intake,
    wait_drained,
)
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def full_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(maxmemory="8mb")
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(full_redis: PrivateRedis) -> str:
    """This module's tests run on a small Redis of their own, which they fill."""
    return full_redis.url


def fill(settings: Settings, petition_id: int) -> Load:
    """Post signatures with distinct idempotency keys until Redis refuses 50 in a row."""
    load = Load()
    refused_in_a_row = 0
    with intake(settings) as client:
        for n in range(60_000):
            key = uuid.uuid4().hex
            status = load.post(client, petition_id, f"f{n}.{key[:6]}@example.org", key=key)
            refused_in_a_row = refused_in_a_row + 1 if status == 503 else 0
            if refused_in_a_row >= 50:
                break
    return load


def test_a_full_redis_refuses_with_503_and_workers_drain_their_way_out(
    settings: Settings, make_petition: PetitionFactory, rt: Runtime, db: DB
) -> None:
    # (a quarter left to the workers: in so small a Redis their connections' buffers alone take
    # a large share; the default tenth is plenty for a production-sized one)
    s = fault_settings(settings, redis_memory_headroom=0.25)
    petition = make_petition()
    # Given a Redis filled to its maxmemory by a backlog and idempotency keys, with no worker
    load = fill(s, petition.id)
    assert rt.redis.info("memory")["used_memory"] >= int(rt.redis.config_get("maxmemory")["maxmemory"]) * 0.7
    # Then the intake answered 202 or 503 with Retry-After, never anything else
    assert set(load.statuses) == {202, 503}
    assert all(status == 503 and retry for status, retry in load.refused)
    # When a worker starts, it drains the backlog on its own: every 202 is stored
    worker = Worker(s, "full", concurrency=2)
    try:
        with suppress(AssertionError):  # the invariant below says what is missing, with the logs
            wait_drained(db, rt, load.receipts, timeout=90)
    finally:
        logs = [worker.stop()]
    assert_invariant(db, rt, load.receipts, logs)
