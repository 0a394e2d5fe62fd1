"""Backpressure: past MAX_BACKLOG the intake answers 503 with Retry-After, and takes signatures
again once the workers have drained the backlog."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from worker.observability import metrics as m
from worker.runtime import Runtime
from worker.settings import Settings

ROUTE = "/petitions/{petition_id}/signatures"
MAX_BACKLOG = 8  # 4 shards in tests: ceil(8 / 4) = 2 entries per shard


@pytest.fixture
def full_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_backlog": MAX_BACKLOG})


@pytest.fixture
def client(full_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(full_settings)) as client:
        yield client


def emails_for_shard(rt: Runtime, shard: int, n: int, tag: str) -> list[str]:
    found = (f"{tag}{i}@example.org" for i in range(10_000))
    return [e for e in found if rt.keys.shard_for_email(e) == shard][:n]


def test_crossing_the_backlog_limit_answers_503_with_retry_after_and_clears_after_draining(
    client: TestClient, make_petition: PetitionFactory, rt: Runtime, drain: Callable[[], int]
) -> None:
    petition = make_petition()
    url = f"/petitions/{petition.id}/signatures"
    limit = MAX_BACKLOG // rt.keys.shards
    for email in emails_for_shard(rt, 0, limit, "x"):
        assert client.post(url, json={"email": email, "name": "A"}).status_code == 202
    # The shard is at its limit: the next signature routed to it is refused, and says when to retry.
    refused = client.post(url, json={"email": emails_for_shard(rt, 0, 1, "over")[0], "name": "A"})
    assert refused.status_code == 503
    assert refused.json()["error"] == "backlog_full"
    assert int(refused.headers["retry-after"]) > 0
    assert rt.redis.xlen(rt.keys.stream(0)) == limit  # nothing was added

    drain()
    # Drained (acknowledged and trimmed): the shard takes a full limit's worth again.
    for email in emails_for_shard(rt, 0, limit, "again"):
        assert client.post(url, json={"email": email, "name": "A"}).status_code == 202
    registry = client.app.state.metrics.registry  # type: ignore[attr-defined]
    assert registry.get_sample_value(m.INTAKE_REQUESTS, {"route": ROUTE, "status": "503"}) == 1
    assert registry.get_sample_value(m.INTAKE_REQUESTS, {"route": ROUTE, "status": "202"}) == 2 * limit


def test_a_fully_acknowledged_shard_is_trimmed_to_empty(
    client: TestClient, make_petition: PetitionFactory, rt: Runtime, drain: Callable[[], int]
) -> None:
    petition = make_petition()
    for email in emails_for_shard(rt, 1, 2, "t"):
        client.post(f"/petitions/{petition.id}/signatures", json={"email": email, "name": "A"})
    drain()
    assert rt.redis.xlen(rt.keys.stream(1)) == 0
