"""ACK_DURABILITY at the intake, against real servers: `replica` waits for a replica (one WAIT per
shared round trip) and says 503 when none confirms; `fsync` refuses to start on a server that
cannot give it."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from api_stub.app import create_app
from api_stub.intake.queue import IntakeQueue
from tests.faults.harness import PrivateRedis
from tests.faults.sentinel import RedisNode, in_sync
from tests.helpers import wait_for
from worker.drain.durability import AckPolicy, DurabilityUnsupported, NotDurable
from worker.drain.registry import PetitionCard, Registry
from worker.drain.streams import lua
from worker.keys import Keys
from worker.pipeline.fields import SignatureFields
from worker.settings import Settings

BODY = {"email": "ann@example.org", "name": "Ann"}


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[RedisNode, RedisNode]]:
    root = Path(tempfile.mkdtemp(prefix="sigrepl-"))
    primary = RedisNode(root, "p")
    replica = RedisNode(root, "r", replica_of=primary.port)
    try:
        primary.start()
        replica.start()
        wait_for(lambda: in_sync(replica), timeout=15)
        yield primary, replica
    finally:
        replica.kill()
        primary.kill()


def publish_open_petition(url: str, keys: Keys) -> None:
    """Petition 1, open; the append script loaded (no NOSCRIPT round trip to count)."""
    with redis.Redis.from_url(url) as sync:
        Registry(sync, keys).publish([PetitionCard(1, "T", "Clara LONG", "open", 1)])
        sync.script_load(lua("append"))


def test_replica_mode_without_a_replica_answers_503_with_retry_after(settings: Settings) -> None:
    # Given the shared Redis (no replica) and ACK_DURABILITY=replica
    s = settings.model_copy(update={"ack_durability": "replica", "ack_timeout_ms": 50})
    publish_open_petition(s.redis_url, Keys(s.key_prefix, s.shards))
    with TestClient(create_app(s)) as client:
        response = client.post("/petitions/1/signatures", json=BODY)
        ready = client.get("/readyz")
    # Then the signer is told to retry, and the intake is not ready
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()
    assert ready.status_code == 503
    assert ready.json()["durability"] | {"replica_lag_bytes": None} == {
        "mode": "replica",
        "holds": False,
        "replicas_connected": 0,
        "replicas_required": 1,
        "replica_lag_seconds": None,
        "replica_lag_bytes": None,
    }


def test_replica_mode_with_a_replica_answers_202_and_shares_one_wait_per_round_trip(
    primary_and_replica: tuple[RedisNode, RedisNode],
) -> None:
    primary, _ = primary_and_replica
    url = f"redis://127.0.0.1:{primary.port}/0"
    keys = Keys("t:", 2)
    publish_open_petition(url, keys)
    client = aioredis.Redis.from_url(url)
    queue = IntakeQueue(client, keys, idempotency_ttl=60, max_backlog=0, ack=AckPolicy("replica", 1, 1000))

    async def run() -> list[Any]:
        try:
            calls = [
                queue.append(1, SignatureFields(f"s{i}@example.org", "A"), f"r{i}", 1, None)
                for i in range(50)
            ]
            return await asyncio.gather(*calls)
        finally:
            await client.aclose()

    # When 50 requests append in the same tick
    results = asyncio.run(run())
    # Then each is acknowledged, and the replica was waited for once, not 50 times
    assert {r.status for r in results} == {"ok"}
    with primary.client() as sync:
        assert int(sync.info("commandstats")["cmdstat_wait"]["calls"]) == 1


def test_replica_mode_refuses_every_append_of_a_round_trip_the_replica_did_not_confirm(
    primary_and_replica: tuple[RedisNode, RedisNode],
) -> None:
    primary, replica = primary_and_replica
    url = f"redis://127.0.0.1:{primary.port}/0"
    keys = Keys("t:", 2)
    publish_open_petition(url, keys)
    with replica.client() as r:
        r.replicaof("NO", "ONE")  # the replica stops confirming
    client = aioredis.Redis.from_url(url)
    queue = IntakeQueue(client, keys, idempotency_ttl=60, max_backlog=0, ack=AckPolicy("replica", 1, 50))

    async def run() -> list[Any]:
        try:
            calls = [
                queue.append(1, SignatureFields(f"s{i}@example.org", "A"), f"r{i}", 1, None) for i in range(5)
            ]
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.aclose()

    assert all(isinstance(r, NotDurable) for r in asyncio.run(run()))


def test_fsync_mode_refuses_to_start_on_a_server_without_waitaof_or_appendfsync_always() -> None:
    server = PrivateRedis(appendfsync="everysec")
    server.start()
    try:
        with redis.Redis(port=server.port) as probe:
            if tuple(int(p) for p in probe.info("server")["redis_version"].split(".")[:2]) >= (7, 2):
                pytest.skip("this redis-server has WAITAOF: fsync mode is allowed with everysec")
        s = Settings.from_env({}, redis_url=server.url, ack_durability="fsync")
        with pytest.raises(DurabilityUnsupported, match="appendfsync always"), TestClient(create_app(s)):
            pass
    finally:
        server.close()


def test_fsync_mode_answers_202_on_a_server_that_fsyncs_always() -> None:
    server = PrivateRedis(appendfsync="always")
    server.start()
    try:
        s = Settings.from_env({}, redis_url=server.url, ack_durability="fsync", key_prefix="t:")
        publish_open_petition(server.url, Keys(s.key_prefix, s.shards))
        with TestClient(create_app(s)) as client:
            assert client.post("/petitions/1/signatures", json=BODY).status_code == 202
            ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["durability"]["mode"] == "fsync"
    finally:
        server.close()


def test_a_retry_with_its_idempotency_key_waits_for_the_replica_like_the_first_attempt(
    primary_and_replica: tuple[RedisNode, RedisNode],
) -> None:
    primary, replica = primary_and_replica
    url = f"redis://127.0.0.1:{primary.port}/0"
    keys = Keys("t:", 2)
    publish_open_petition(url, keys)
    ann = SignatureFields("ann@example.org", "Ann", idempotency_key="k-ann")
    bob = SignatureFields("bob@example.org", "Bob", idempotency_key="k-bob")

    async def scenario() -> tuple[Any, Any, Any, Any]:
        warm, fresh = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
        policy = AckPolicy("replica", 1, 100)
        on_warm = IntakeQueue(warm, keys, idempotency_ttl=60, max_backlog=0, ack=policy)
        on_fresh = IntakeQueue(fresh, keys, idempotency_ttl=60, max_backlog=0, ack=policy)
        try:
            # Given a connection whose last write the replica confirmed
            earlier = await on_warm.append(1, bob, "r-bob", 1, None)
            # When the replica stops confirming, Ann's first attempt (another connection) is
            # refused and she retries with her key on the warm connection
            replica.signal(signal.SIGSTOP)
            try:
                first = await asyncio.gather(
                    on_fresh.append(1, ann, "r-first", 1, None), return_exceptions=True
                )
                retry = await asyncio.gather(
                    on_warm.append(1, ann, "r-retry", 1, None), return_exceptions=True
                )
            finally:
                replica.signal(signal.SIGCONT)
            again = await on_warm.append(1, ann, "r-again", 1, None)
            return earlier, first[0], retry[0], again
        finally:
            await warm.aclose()
            await fresh.aclose()

    earlier, first, retry, again = asyncio.run(scenario())
    assert earlier.status == "ok" and isinstance(first, NotDurable)
    # Then the retry is refused too: its first attempt's append is still not on the replica
    assert isinstance(retry, NotDurable)
    # And once the replica is back, the retry gets the first attempt's receipt
    assert again.status == "ok" and again.receipt == "r-first"
