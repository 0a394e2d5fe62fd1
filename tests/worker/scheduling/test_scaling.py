"""Two worker hosts share the shards (whoever is free drains), each serves its own /metrics summed
over its prefork children, and stopping one with SIGTERM (warm shutdown) loses nothing."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import backlog, read_invariant, start_worker, stop_process, wait_for
from worker.observability import metrics as m
from worker.observability.stats import gather
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A worker endpoint's samples, or {} while it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def persisted_by(port: int) -> float:
    return scrape(port).get((m.WORKER_SIGNATURES, (("outcome", "persisted"),)), 0.0)


def logged_persisted(output: str) -> int:
    """Signatures a worker host's processes said they persisted: the sum over every process's
    `batch` log lines, counted without the metrics machinery."""
    total = 0
    for line in output.splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # Celery's banner and the like
        if isinstance(record, dict) and record.get("logger") == "sigingest.batch":
            total += int(record["persisted"])
    return total


def persisted_per_process(directory: Path) -> list[float]:
    """Each process's own persisted count, from its own multiprocess counter file."""
    return [
        s.value
        for f in sorted(directory.glob("counter_*.db"))
        for metric in MultiProcessCollector.merge([str(f)])  # type: ignore[no-untyped-call]
        for s in metric.samples
        if s.name == m.WORKER_SIGNATURES and s.labels == {"outcome": "persisted"}
    ]


def stored(db: psycopg.Connection[tuple[object, ...]]) -> int:
    row = db.execute("SELECT count(*) FROM signatures").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_two_workers_both_drain_and_a_warm_shutdown_of_one_loses_nothing(
    settings: Settings,
    client: TestClient,
    make_petition: PetitionFactory,
    rt: Runtime,
    db: psycopg.Connection[tuple[object, ...]],
    tmp_path: Path,
) -> None:
    config = settings.model_copy(update={"batch_size": 8, "drain_slice_seconds": 1.0})
    ports = free_port(), free_port()
    names = [f"scale{n}-{uuid.uuid4().hex[:6]}" for n in range(2)]
    workers: list[subprocess.Popen[bytes]] = [
        start_worker(
            config,
            names[n],
            concurrency=2,
            WORKER_METRICS_PORT=str(port),
            WORKER_METRICS_DIR=str(tmp_path / f"metrics{n}"),
        )
        for n, port in enumerate(ports)
    ]
    petition = make_petition()
    url = f"/petitions/{petition.id}/signatures"
    outputs = ["", ""]
    try:
        wait_for(lambda: all(scrape(p) for p in ports), timeout=120)  # both endpoints up (slow when loaded)
        sent = 0
        deadline = time.monotonic() + 60
        # Feed until both hosts have persisted something: shards are not assigned to hosts.
        while not all(persisted_by(p) > 0 for p in ports):
            assert time.monotonic() < deadline, "both workers should drain"
            for _ in range(50):
                client.post(url, json={"email": f"s{sent}@example.org", "name": "S"})
                sent += 1
        # Warm shutdown of the first host while signatures keep arriving.
        outputs[0] = stop_process(workers[0])
        assert workers[0].returncode == 0, outputs[0][-2000:]
        for _ in range(300):
            client.post(url, json={"email": f"s{sent}@example.org", "name": "S"})
            sent += 1
        try:
            wait_for(lambda: stored(db) == sent + 1 and backlog(rt) == (0, 0), timeout=60)
        except AssertionError:  # say where it stuck, with the survivor's own account
            where = f"stored {stored(db)} of {sent + 1}; backlog {backlog(rt)}; survivor {workers[1].poll()}"
            sessions = db.execute(
                "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, left(query, 80)"
                " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
            ps = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,args"], capture_output=True, text=True)
            celery = [line for line in ps.stdout.splitlines() if "celery" in line]
            log = stop_process(workers[1])
            raise AssertionError(
                f"{where}\nsessions {sessions}\n" + "\n".join(celery) + f"\n{log[-3000:]}"
            ) from None
        totals = gather(rt.redis, rt.keys, time.time())
        assert totals.accepted == sent and totals.persisted == sent
        # The surviving host's endpoint sums its prefork children: it shows what both of them
        # logged, and the two hosts' logs account for every signature.
        survivor = scrape(ports[1])
        did = logged_persisted(workers[1].output())
        assert did + logged_persisted(outputs[0]) == sent
        children = persisted_per_process(tmp_path / "metrics1")
        shown = survivor[(m.WORKER_SIGNATURES, (("outcome", "persisted"),))]
        assert shown == did, f"/metrics shows {shown:.0f} persisted, its processes logged {did} ({children})"
        # (a sum of one would prove nothing: both children drained)
        assert len([n for n in children if n > 0]) >= 2, f"one prefork child did all the work: {children}"
        assert survivor[(f"{m.WORKER_BATCH_SIZE}_count", ())] == survivor[(m.WORKER_BATCHES, ())]
    finally:
        for n, worker in enumerate(workers):
            if worker.poll() is None:
                outputs[n] = stop_process(worker)
    invariant = read_invariant(db)
    assert invariant.counts_match and invariant.signatures == sent and invariant.duplicate_receipts == 0
    # A stopped worker leaves no direct queue (its last slices' successors) and no binding behind.
    assert [key for name in names for key in rt.redis.keys(f"{name}@*")] == []
    bindings = rt.redis.smembers("_kombu.binding.C.dq2")
    assert not [b for b in bindings if any(name.encode() in b for name in names)], bindings
    assert client.get(f"/petitions/{petition.id}").json()["signature_count"] == sent + 1
