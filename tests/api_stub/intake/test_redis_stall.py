"""A Redis that stalls past the intake's reply timeout (`CLIENT PAUSE`): the request answers 503
with `Retry-After`, and the append is never sent again (at most one entry per submission).
On a Redis of the test's own: pausing the shared one would stall every other test."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.faults.harness import PrivateRedis
from tests.helpers import backlog, wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow

PAUSE_MS = 6_000  # longer than the intake's 5 s reply timeout


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    return private_redis.url


def test_a_stalled_redis_answers_503_and_the_append_runs_once(
    settings: Settings, rt: Runtime, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    url = f"/petitions/{petition.id}/signatures"
    with TestClient(create_app(settings)) as client:
        assert client.post(url, json={"email": "warm@example.org", "name": "Ann"}).status_code == 202
        # When Redis stalls just as a signature is sent
        redis.Redis.from_url(settings.redis_url).client_pause(PAUSE_MS, all=True)
        paused_at = time.monotonic()
        body, key = {"email": "stall@example.org", "name": "Bob"}, {"Idempotency-Key": "k-stall"}
        stalled = client.post(url, json=body, headers=key)
        # Then the signer is told to retry (not 500, not a 202 after a blind resend)
        assert stalled.status_code == 503 and stalled.headers["retry-after"]
        wait_for(lambda: time.monotonic() - paused_at > PAUSE_MS / 1000 + 0.5, timeout=10)
        # And Redis ran the append at most once (it drops the commands of a client that hung up
        # while paused, so usually not at all); the signer's retry then makes it exactly once
        assert backlog(rt)[0] in (1, 2)
        again = client.post(url, json=body, headers=key)
        assert again.status_code == 202
        assert backlog(rt)[0] == 2
