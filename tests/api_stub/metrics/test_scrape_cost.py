"""A storm of concurrent `/metrics` scrapes costs Redis one reading of the queue figures, not one
per scrape (`METRICS_CACHE_SECONDS`), counted with `INFO commandstats` on a Redis of the test's
own (the shared one serves other tests at the same time)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.faults.harness import PrivateRedis
from worker.settings import Settings


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    return private_redis.url


def commands_run(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def test_a_storm_of_concurrent_scrapes_reads_the_queue_once(
    settings: Settings, make_petition: PetitionFactory
) -> None:
    # Given an intake with a backlog and figures cached for longer than the storm lasts
    cached = settings.model_copy(update={"metrics_cache_seconds": 60.0})
    petition = make_petition()
    direct = redis.Redis.from_url(settings.redis_url)
    with TestClient(create_app(cached)) as client:
        for n in range(20):
            client.post(
                f"/petitions/{petition.id}/signatures", json={"email": f"m{n}@example.org", "name": "M"}
            )
        before = commands_run(direct)
        # When 100 scrapes come at once
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: client.get("/metrics"), range(100)))
        spent = commands_run(direct) - before - 1  # less our own first INFO
    # Then all are answered, and Redis did one reading's work: a few calls per shard
    assert {a.status_code for a in answers} == {200}
    assert all(b"sigingest_queue_lag_seconds" in a.content for a in answers)
    assert spent <= 6 * cached.shards + 4
