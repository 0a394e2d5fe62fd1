"""Redis refusing writes (out of memory under `noeviction`) means "retry later" on the worker side
too, not an unexpected error that fails a drain task."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.helpers import missing_tool
from worker.drain.registry import PetitionCard, Registry
from worker.errors import QueueUnavailable
from worker.keys import Keys
from worker.ops.embedded import free_port
from worker.settings import Settings

REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture
def full_redis() -> Iterator[redis.Redis]:
    if REDIS_SERVER is None:
        missing_tool("no redis-server binary on PATH")
    port = free_port()
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory", "1", "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def test_a_write_refused_for_memory_becomes_queue_unavailable(full_redis: redis.Redis) -> None:
    registry = Registry(full_redis, Keys("t:", 2))
    with pytest.raises(QueueUnavailable, match="OutOfMemoryError"):
        registry.publish([PetitionCard(1, "Save the library", "Clara LONG", "open", 1)])
    assert full_redis.exists("t:petition:1") == 0


def test_the_intake_answers_503_when_redis_refuses_the_append_for_memory(
    full_redis: redis.Redis, settings: Settings
) -> None:
    from starlette.testclient import TestClient

    from api_stub.app import create_app

    port = full_redis.connection_pool.connection_kwargs["port"]
    full_redis.config_set("maxmemory", 0)
    Registry(full_redis, Keys("t:", 2)).publish(
        [PetitionCard(1, "Save the library", "Clara LONG", "open", 1)]
    )
    full_redis.config_set("maxmemory", 1)
    local = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{port}/0", "key_prefix": "t:", "shards": 2}
    )
    with TestClient(create_app(local)) as client:
        answer = client.post("/petitions/1/signatures", json={"email": "a@example.org", "name": "Ann"})
    assert answer.status_code == 503 and answer.headers["retry-after"].isdigit()
    assert full_redis.xlen("t:stream:0") + full_redis.xlen("t:stream:1") == 0
