"""`IntakeQueue`: concurrent appends share round trips, each keeps its own answer (real Redis)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from api_stub.intake.queue import Call, IntakeQueue, SharedRoundTrips
from tests.conftest import PetitionFactory
from tests.helpers import backlog
from worker.drain.registry import PetitionCard, Registry
from worker.keys import Keys
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime
from worker.settings import Settings


class CountingRoundTrips(SharedRoundTrips):
    """Records how many calls each pipeline carried."""

    sizes: list[int]

    async def _evalsha(self, calls: list[Call]) -> list[Any]:
        self.sizes = [*getattr(self, "sizes", []), len(calls)]
        return await super()._evalsha(calls)


def make_queue(url: str, keys: Keys) -> tuple[IntakeQueue, CountingRoundTrips, aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    queue = IntakeQueue(client, keys, idempotency_ttl=60, max_backlog=0)
    counting = CountingRoundTrips(client, queue._append._source)
    queue._append = counting
    return queue, counting, client


async def append_many(queue: IntakeQueue, petition_ids: list[int]) -> list[Any]:
    calls = [
        queue.append(pid, SignatureFields(f"s{i}@example.org", "Ann"), f"r{i}", 1, None)
        for i, pid in enumerate(petition_ids)
    ]
    return await asyncio.gather(*calls)


def test_concurrent_appends_share_one_round_trip_and_each_gets_its_own_receipt(
    settings: Settings, keys: Keys, rt: Runtime, make_petition: PetitionFactory
) -> None:
    # Given an open petition, when 100 requests append in the same tick
    petition = make_petition()
    queue, counting, client = make_queue(settings.redis_url, keys)

    async def run() -> list[Any]:
        try:
            return await append_many(queue, [petition.id] * 100)
        finally:
            await client.aclose()

    results = asyncio.run(run())
    # Then each has its own receipt, all are queued, and they went in one pipeline
    assert [r.receipt for r in results] == [f"r{i}" for i in range(100)]
    assert {r.status for r in results} == {"ok"}
    assert backlog(rt)[0] == 100
    assert counting.sizes == [100]


def test_answers_in_a_shared_round_trip_stay_apart(
    settings: Settings, keys: Keys, rt: Runtime, make_petition: PetitionFactory
) -> None:
    # Given one open and one closed petition and one that does not exist
    open_one, closed = make_petition(), make_petition()
    rt.registry.publish([PetitionCard(closed.id, closed.title, closed.starter_name, "closed", 1)])
    queue, _, client = make_queue(settings.redis_url, keys)

    async def run() -> list[Any]:
        try:
            return await append_many(queue, [open_one.id, closed.id, 999_999, open_one.id])
        finally:
            await client.aclose()

    # When they are appended together, then each gets its own answer and only two are queued
    assert [r.status for r in asyncio.run(run())] == ["ok", "closed", "unknown", "ok"]
    assert backlog(rt)[0] == 2


@pytest.fixture
def private_redis() -> Iterator[str]:
    """A Redis of our own: the test flushes its script cache, which the shared one must keep."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    client.close()
    proc.terminate()
    proc.wait(10)


def test_a_flushed_script_cache_is_reloaded_and_nothing_runs_twice(private_redis: str) -> None:
    # Given a Redis that has never seen the append script (as after a restart)
    keys = Keys("t:", 2)
    sync = redis.Redis.from_url(private_redis)
    Registry(sync, keys).publish([PetitionCard(1, "T", "Clara LONG", "open", 1)])
    sync.script_flush()
    queue, _, client = make_queue(private_redis, keys)

    async def run() -> list[Any]:
        try:
            return await append_many(queue, [1] * 10)
        finally:
            await client.aclose()

    # When ten appends go out together, then all succeed exactly once
    assert {r.status for r in asyncio.run(run())} == {"ok"}
    assert sum(int(sync.xlen(s)) for s in keys.streams()) == 10
    sync.close()
