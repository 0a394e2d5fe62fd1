"""Metric values after a known workload are exactly the workload's numbers."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

import orjson
import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from worker.observability import metrics as m
from worker.observability.stats import gather
from worker.ops.stats_cli import show
from worker.runtime import Runtime
from worker.settings import Settings

ROUTE = "/petitions/{petition_id}/signatures"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def run_known_workload(client: TestClient, petition_id: int) -> None:
    """100 new signers, 10 duplicates of them (case, dots, +tags), 5 invalid emails the worker
    rejects, and 3 submissions the intake refuses (422)."""
    url = f"/petitions/{petition_id}/signatures"
    for n in range(100):
        assert client.post(url, json={"email": f"signer.{n}@gmail.com", "name": "S"}).status_code == 202
    for n in range(10):
        variant = [f"SIGNER.{n}@gmail.com", f"signer{n}@googlemail.com", f"signer.{n}+x@gmail.com"][n % 3]
        assert client.post(url, json={"email": variant, "name": "S"}).status_code == 202
    for n in range(5):
        assert client.post(url, json={"email": f"bad{n}@nodot", "name": "S"}).status_code == 202
    for _ in range(3):
        assert client.post(url, json={"email": "no-name@example.org"}).status_code == 422


def test_intake_and_worker_metrics_equal_a_known_workload(
    client: TestClient, make_petition: PetitionFactory, drain: Callable[[], int], rt: Runtime
) -> None:
    petition = make_petition()
    run_known_workload(client, petition.id)
    drain()

    intake = client.app.state.metrics.registry  # type: ignore[attr-defined]
    assert value(intake, m.INTAKE_REQUESTS, route=ROUTE, status="202") == 115
    assert value(intake, m.INTAKE_REQUESTS, route=ROUTE, status="422") == 3
    assert value(intake, f"{m.INTAKE_REQUEST_DURATION}_count", route=ROUTE) == 118
    assert value(intake, m.INTAKE_REQUEST_BYTES, route=ROUTE) > 0
    assert value(intake, m.INTAKE_REDIS_ERRORS) == 0

    worker = rt.metrics.registry
    assert value(worker, m.WORKER_SIGNATURES, outcome="persisted") == 100
    assert value(worker, m.WORKER_SIGNATURES, outcome="duplicate") == 10
    assert value(worker, m.WORKER_SIGNATURES, outcome="rejected") == 5
    assert value(worker, m.WORKER_REJECTED, reason="invalid_email") == 5
    assert value(worker, m.WORKER_SIGNATURES, outcome="dead_lettered") == 0
    batches = value(worker, m.WORKER_BATCHES)
    assert batches >= 1
    assert value(worker, f"{m.WORKER_BATCH_SIZE}_count") == batches
    assert value(worker, f"{m.WORKER_BATCH_SIZE}_sum") == 115  # every entry in exactly one batch
    assert value(worker, f"{m.WORKER_BATCH_DURATION}_count") == batches


def test_stats_json_shows_the_same_totals_and_the_petition_busy_in_the_last_minute(
    client: TestClient,
    make_petition: PetitionFactory,
    drain: Callable[[], int],
    rt: Runtime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiet = make_petition(title="Quiet one")
    busy = make_petition(title="Busy one")
    run_known_workload(client, busy.id)
    client.post(f"/petitions/{quiet.id}/signatures", json={"email": "q@example.org", "name": "Q"})
    drain()

    args = argparse.Namespace(json=True, watch=False, interval=1.0, count=0)
    assert show(lambda: gather(rt.redis, rt.keys, time.time()), args, Console()) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["totals"] == {
        "accepted": 116,
        "persisted": 101,
        "duplicates": 10,
        "uncounted": 0,
        "rejected": {"invalid_email": 5},
        "dead_lettered": 0,
        "dead_letters_waiting": 0,
        "pending": 0,
        "confirmed": 0,
        "refused_confirmations": 0,
        "expired": 0,
        "confirm_emails_owed": 0,
    }
    assert [(p["id"], p["last_minute"], p["signature_count"]) for p in report["petitions"]] == [
        (busy.id, 100, 101),  # the starter's signature counts, but was not persisted by a worker
        (quiet.id, 1, 2),
    ]
    assert [s["shard"] for s in report["shards"]] == list(range(rt.keys.shards))
    assert all(s["pending"] == 0 and s["lag_seconds"] == 0 for s in report["shards"])


def test_stats_watch_refreshes_until_told_to_stop(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    reads: list[float] = []

    def read() -> object:
        reads.append(time.monotonic())
        return gather(rt.redis, rt.keys, time.time())

    args = argparse.Namespace(json=True, watch=True, interval=0.05, count=3)
    assert show(read, args, Console()) == 0  # type: ignore[arg-type]
    frames = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(frames) == len(reads) == 3
    assert all("shards" in frame for frame in frames)


def test_stats_human_table_names_every_figure(rt: Runtime) -> None:
    console = Console(record=True, width=120)
    args = argparse.Namespace(json=False, watch=False, interval=1.0, count=0)
    assert show(lambda: gather(rt.redis, rt.keys, time.time()), args, console) == 0
    text = console.export_text()
    for heading in (
        "shards",
        "pending",
        "oldest pending",
        "lag",
        "consumers",
        "accepted",
        "persisted",
        "duplicates",
        "busiest petitions",
        "acknowledgement durability",
        "holds",
        "replicas connected",
    ):
        assert heading in text


def test_the_metrics_endpoint_serves_intake_and_queue_series_without_personal_data(
    client: TestClient, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    run_known_workload(client, petition.id)
    client.get("/no/such/path/ann@example.org")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (m.INTAKE_REQUESTS, f"{m.INTAKE_REQUEST_DURATION}_bucket", m.QUEUE_LAG, m.QUEUE_UP):
        assert f"\n{name}" in text
    assert 'route="unmatched",status="404"' in text  # unknown paths share one label value
    assert "@" not in text and "signer" not in text


def test_redis_errors_are_counted_and_answered_503(
    settings: Settings, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as client:
        response = client.post(
            f"/petitions/{petition.id}/signatures", json={"email": "a@example.org", "name": "A"}
        )
        assert response.status_code == 503 and response.headers["retry-after"]
        registry = client.app.state.metrics.registry  # type: ignore[attr-defined]
        assert value(registry, m.INTAKE_REDIS_ERRORS) == 1
        assert value(registry, m.INTAKE_REQUESTS, route=ROUTE, status="503") == 1
        assert value(registry, m.QUEUE_UP) == 0


def test_the_sigingest_stats_command_reads_the_configured_redis(
    settings: Settings,
    client: TestClient,
    make_petition: PetitionFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from worker.ops.cli import main

    petition = make_petition()
    client.post(f"/petitions/{petition.id}/signatures", json={"email": "c@example.org", "name": "C"})
    for name in ("REDIS_URL", "KEY_PREFIX", "SHARDS", "DATABASE_URL"):
        monkeypatch.setenv(name, str(getattr(settings, name.lower())))
    monkeypatch.setenv("ACK_DURABILITY", "replica")
    assert main(["stats", "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["totals"]["accepted"] == 1
    # The shared test Redis has no replica: the mode in force is named, and it does not hold
    assert shown["durability"]["mode"] == "replica" and shown["durability"]["holds"] is False
    assert main(["stats", "--watch", "--json", "--interval", "0.01", "--count", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["stats"]) == 0
    assert "accepted" in capsys.readouterr().out
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["stats"]) == 1
    assert "cannot read Redis" in capsys.readouterr().err
