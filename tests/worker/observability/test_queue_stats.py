"""Queue figures from Redis: lag grows while no worker drains and falls to 0 once one has."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from worker.connections import redis_client
from worker.observability import metrics as m
from worker.observability.queue_stats import QueueCollector, shard_stats
from worker.runtime import Runtime
from worker.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def max_lag(registry: CollectorRegistry, shards: int) -> float:
    return max(registry.get_sample_value(m.QUEUE_LAG, {"shard": str(s)}) or 0.0 for s in range(shards))


def test_lag_grows_while_workers_are_stopped_and_falls_to_zero_after(
    client: TestClient, make_petition: PetitionFactory, rt: Runtime, drain: Callable[[], int]
) -> None:
    registry = CollectorRegistry()
    registry.register(QueueCollector(rt.redis, rt.keys, cache_seconds=0))
    petition = make_petition()
    rt.streams.ensure_groups()  # as after a worker start: the group exists, nobody is reading
    for n in range(40):
        client.post(f"/petitions/{petition.id}/signatures", json={"email": f"l{n}@example.org", "name": "L"})
    # Half of them delivered but not acknowledged, as when a worker dies mid-batch.
    rt.streams.read("gone-worker", 20, 10)

    first = max_lag(registry, rt.keys.shards)
    time.sleep(0.3)
    second = max_lag(registry, rt.keys.shards)
    assert second > first > 0
    stats = shard_stats(rt.redis, rt.keys)
    assert sum(s.pending for s in stats) == 20 and sum(s.undelivered for s in stats) == 20
    assert all(s.lag_seconds >= s.oldest_pending_age_seconds for s in stats)
    assert registry.get_sample_value(m.QUEUE_UP) == 1

    time.sleep(rt.settings.claim_idle_ms / 1000)  # the dead worker's entries become claimable
    drain()
    assert max_lag(registry, rt.keys.shards) == 0
    assert sum(registry.get_sample_value(m.QUEUE_PENDING, {"shard": str(s)}) or 0 for s in range(4)) == 0


def test_lag_counts_from_the_first_entry_before_any_worker_created_the_group(
    client: TestClient, make_petition: PetitionFactory, rt: Runtime
) -> None:
    petition = make_petition()
    client.post(f"/petitions/{petition.id}/signatures", json={"email": "early@example.org", "name": "E"})
    time.sleep(0.05)
    stats = shard_stats(rt.redis, rt.keys)
    assert sum(s.undelivered for s in stats) == 1
    assert max(s.lag_seconds for s in stats) > 0


def test_the_collector_reports_redis_down_instead_of_stale_figures(rt: Runtime) -> None:
    registry = CollectorRegistry()
    registry.register(
        QueueCollector(redis_client(Settings.from_env({}, redis_url="redis://127.0.0.1:1/0")), rt.keys)
    )
    assert registry.get_sample_value(m.QUEUE_UP) == 0
    assert registry.get_sample_value(m.QUEUE_LAG, {"shard": "0"}) is None
