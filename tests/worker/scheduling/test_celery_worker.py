"""Real Celery worker processes drain the streams by themselves."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import backlog, read_invariant, start_worker, stop_process, wait_for
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def persisted(db: psycopg.Connection[tuple[object, ...]]) -> int:
    row = db.execute("SELECT count(*) FROM signatures").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def test_a_started_worker_drains_by_itself_and_persists_an_idle_signature_quickly(
    settings: Settings,
    client: TestClient,
    make_petition: PetitionFactory,
    rt: Runtime,
    db: psycopg.Connection[tuple[object, ...]],
) -> None:
    petition = make_petition()
    for n in range(200):
        client.post(f"/petitions/{petition.id}/signatures", json={"email": f"u{n}@example.org", "name": "U"})
    worker = start_worker(
        settings.model_copy(update={"drain_slice_seconds": 1.0}), f"t{uuid.uuid4().hex[:8]}"
    )
    try:
        wait_for(lambda: persisted(db) == 201, timeout=60)
        # Idle now, across several 1 s slice hand-overs: a new signature is still picked up by
        # a drainer blocked on the streams (its latency is measured in `make bench`, not here).
        time.sleep(2.5)
        client.post(f"/petitions/{petition.id}/signatures", json={"email": "late@example.org", "name": "L"})
        wait_for(lambda: persisted(db) == 202, timeout=10, interval=0.01)
        # the live count is published after the commit and the XACK: it follows, a moment later
        wait_for(lambda: client.get(f"/petitions/{petition.id}").json()["signature_count"] == 202, timeout=10)
    finally:
        output = stop_process(worker)
    assert read_invariant(db).counts_match
    assert backlog(rt) == (0, 0), output[-3000:]
