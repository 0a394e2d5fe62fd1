"""What the fault tests share: private servers they may stop, load through the real intake, a
look at worker processes and PostgreSQL backends, and the end-to-end invariant.

Servers a test stops are its own (free port, temporary directory), never the shared ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from starlette.testclient import TestClient

from bench.env import cpu_seconds  # noqa: F401  (one /proc reader for bench and fault tests)
from tests.helpers import backlog, read_invariant, start_worker, stop_process, wait_for
from worker.keys import CONSUMER_GROUP
from worker.runtime import Runtime
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# Settings every fault test's workers run with: short slices so a warm shutdown is quick, and a
# low claim threshold so a dead consumer's entries are taken over within a second.
FAULT_SETTINGS = {
    "drain_slice_seconds": 1.0,
    "claim_idle_ms": 800,
    "claim_interval_ms": 200,
    "block_ms": 50,
    "batch_size": 100,
    "db_retry_max_seconds": 2.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- private Redis ---------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own, append-only file on (`appendfsync everysec`)."""

    def __init__(self, appendfsync: str = "everysec", maxmemory: str = "0") -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sigredis-")
        self.appendfsync = appendfsync
        self.maxmemory = maxmemory  # "0": no limit; else noeviction past it
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--logfile",
                "redis.log",
                "--maxmemory",
                self.maxmemory,
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=15)

    def _answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash (the OS keeps what it wrote)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- private PostgreSQL ----------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, run as the unprivileged `postgres` user."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sigpg-")
        self.data = os.path.join(self.dir, "data")
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_postgres, *argv], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c shared_buffers=16MB"
        log = f"{self.dir}/log"
        self._run(str(PG_BIN / "pg_ctl"), "-D", self.data, "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash: backends die, the next start replays the WAL."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop")

    def close(self) -> None:
        with suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- load through the real intake ------------------------------------------------------------


@dataclass
class Load:
    """Signatures posted through the intake, and every answer it gave."""

    receipts: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  # monotonic (sent, answered)
    refused: list[tuple[int, str | None]] = field(default_factory=list)  # (status, Retry-After)
    refused_emails: set[str] = field(default_factory=set)  # addresses of the refused submissions

    def post(self, client: TestClient, petition_id: int, email: str, *, key: str | None = None) -> int:
        """One submission; returns the status. A 202's receipt is recorded."""
        headers = {"idempotency-key": key} if key else {}
        started, sent = time.perf_counter(), time.monotonic()
        body = {"email": email, "name": "Fault Test"}
        response = client.post(f"/petitions/{petition_id}/signatures", json=body, headers=headers)
        self.latencies.append(time.perf_counter() - started)
        self.spans.append((sent, time.monotonic()))
        self.statuses.append(response.status_code)
        if response.status_code == 202:
            self.receipts.append(response.json()["receipt"])
        else:
            self.refused.append((response.status_code, response.headers.get("retry-after")))
            self.refused_emails.add(email)
        return response.status_code

    def many(self, client: TestClient, petition_id: int, count: int, tag: str = "") -> None:
        tag = tag or uuid.uuid4().hex[:6]
        for n in range(count):
            status = self.post(client, petition_id, f"s{n}.{tag}@example.org")
            assert status == 202, f"submission {n} answered {status}"


class Background:
    """Keeps posting in a thread until stopped; each submission retried with its idempotency
    key until it gets a 202, as a well-behaved client does after a 503."""

    def __init__(self, client: TestClient, petition_id: int, load: Load) -> None:
        self.client, self.petition_id, self.load = client, petition_id, load
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            n = 0
            while not self.stop_event.is_set():
                key = uuid.uuid4().hex
                email = f"b{n}.{key[:6]}@example.org"
                while self.load.post(self.client, self.petition_id, email, key=key) != 202:
                    time.sleep(0.05)
                n += 1
        except BaseException as exc:  # surfaced by `stop`
            self.error = exc

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the load thread did not stop"
        if self.error is not None:
            raise self.error


@contextmanager
def intake(settings: Settings) -> Iterator[TestClient]:
    from api_stub.app import create_app

    with TestClient(create_app(settings)) as client:
        yield client


def queued(settings: Settings, petition_id: int, count: int) -> Load:
    """`count` signatures accepted by the intake (each a 202), waiting for a worker."""
    load = Load()
    with intake(settings) as client:
        load.many(client, petition_id, count)
    return load


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# --- worker processes and PostgreSQL backends -----------------------------------------------


def fault_settings(settings: Settings, **overrides: object) -> Settings:
    return settings.model_copy(update={**FAULT_SETTINGS, **overrides})


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a Celery worker's pool processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def consumer_name(pid: int) -> str:
    """The consumer name a drainer in process `pid` reads the streams under (see runtime.py)."""
    return f"{socket.gethostname()}:{pid}"


def consumers_pending(rt: Runtime) -> dict[str, int]:
    """Entries pending per consumer, over every shard."""
    totals: dict[str, int] = {}
    for stream in rt.keys.streams():
        if not rt.redis.exists(stream):
            continue
        for consumer in rt.redis.xinfo_consumers(stream, CONSUMER_GROUP):
            name = consumer["name"].decode()
            totals[name] = totals.get(name, 0) + int(consumer["pending"])
    return totals


def lock_waiters(db: DB) -> int:
    """Backends of this test's database waiting for a lock (a worker blocked mid-batch)."""
    row = db.execute(
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"""
    ).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


@contextmanager
def petition_row_locked(database_url: str, petition_id: int) -> Iterator[DB]:
    """Hold `FOR UPDATE` on a petition row in an open transaction: a batch for it blocks at its
    count update, after its inserts, before its commit. Released (rolled back) on exit."""
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT id FROM petitions WHERE id = %s FOR UPDATE", [petition_id])
        yield conn
        conn.rollback()


class Worker:
    """A real `celery -A worker worker` process (tests.helpers.start_worker)."""

    def __init__(self, settings: Settings, name: str, concurrency: int = 2) -> None:
        self.proc = start_worker(settings, f"{name}{uuid.uuid4().hex[:8]}", concurrency=concurrency)
        self.pid = self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        """What the worker has printed so far."""
        return self.proc.output()

    def terminate(self) -> None:
        """SIGTERM: Celery's warm shutdown."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> str:
        """Warm shutdown (killed after `timeout`); returns everything the worker printed."""
        return stop_process(self.proc, timeout)


def stop_all(*workers: Worker | None) -> list[str]:
    """Stop workers together (their warm shutdowns overlap); returns their output."""
    running = [w for w in workers if w is not None]
    for worker in running:
        worker.terminate()
    return [worker.stop() for worker in running]


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


# --- the invariant ---------------------------------------------------------------------------


def stored_receipts(db: DB) -> tuple[list[str], list[str]]:
    signed = [r for (r,) in db.execute("SELECT receipt FROM signatures WHERE receipt NOT LIKE 'starter-%%'")]
    rejected = [r for (r,) in db.execute("SELECT receipt FROM rejected_signatures")]
    return signed, rejected  # type: ignore[return-value]


def assert_invariant(
    db: DB,
    rt: Runtime,
    receipts: list[str],
    logs: list[str] | None = None,
    *,
    refused: set[str] | None = None,
) -> None:
    """The promise: every receipt the intake returned is in `signatures` or
    `rejected_signatures` exactly once, and nothing else is; every petition's `signature_count`
    equals its validated rows; the streams have nothing unread or pending. On failure the
    workers' logs (tails) are shown.

    `refused`: addresses whose submission got a 503 that may have followed an append that ran
    (a lost reply, a replica acknowledgement that fell short). Such an append may land; it is
    then allowed, as long as nobody is counted twice (the signer's retry folds by person)."""
    try:
        _check_invariant(db, rt, receipts, refused or set())
    except AssertionError as exc:
        tails = "\n".join(f"--- worker log ---\n{log[-4000:]}" for log in logs or [])
        raise AssertionError(f"{exc}\n{tails}") from None


def _check_invariant(db: DB, rt: Runtime, receipts: list[str], refused: set[str]) -> None:
    signed, rejected = stored_receipts(db)
    everything = signed + rejected
    assert len(everything) == len(set(everything)), "a receipt is stored twice"
    assert len(receipts) == len(set(receipts)), "the intake gave one receipt twice"
    missing = set(receipts) - set(everything)
    extra = set(everything) - set(receipts)
    assert not missing, f"{len(missing)} accepted signatures were lost"
    unexplained = [row for row in _describe(db, extra) if row[1] not in refused]
    assert not unexplained, f"{len(unexplained)} stored signatures were never accepted: {unexplained}"
    twice = db.execute(
        "SELECT canonical_email, petition_id FROM signatures WHERE state = 'validated'"
        " GROUP BY canonical_email, petition_id HAVING count(*) > 1"
    ).fetchall()
    assert not twice, f"{len(twice)} people are counted twice"
    assert read_invariant(db).counts_match, "a petition's signature_count differs from its rows"
    assert backlog(rt) == (0, 0), "entries are left unread or pending"


def _describe(db: DB, receipts: set[str]) -> list[tuple[object, ...]]:
    """Receipt, address and state (or reject reason) of stored receipts, for a failure message."""
    return db.execute(
        "SELECT receipt, email, state FROM signatures WHERE receipt = ANY(%(r)s)"
        " UNION ALL SELECT receipt, NULL, reason FROM rejected_signatures WHERE receipt = ANY(%(r)s)",
        {"r": sorted(receipts)},
    ).fetchall()


def wait_drained(db: DB, rt: Runtime, receipts: list[str], timeout: float = 45.0) -> None:
    """Wait for the workers to store every receipt and leave nothing pending."""

    def done() -> bool:
        signed, rejected = stored_receipts(db)
        return len(signed) + len(rejected) >= len(receipts) and backlog(rt) == (0, 0)

    wait_for(done, timeout=timeout, interval=0.2)


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def unfinished_receipts(rt: Runtime) -> set[str]:
    """Receipts of entries not yet acknowledged: never delivered, or delivered and pending."""
    import orjson

    found: set[str] = set()
    for stream in rt.keys.streams():
        if not rt.redis.exists(stream):
            continue
        groups: Any = rt.redis.xinfo_groups(stream)
        group = next((g for g in groups if g["name"].decode() == CONSUMER_GROUP), None)
        if group is None:
            last, pending = (0, 0), set()
        else:
            last = _stream_id(group["last-delivered-id"])
            listed: Any = rt.redis.xpending_range(stream, CONSUMER_GROUP, min="-", max="+", count=10**6)
            pending = {_stream_id(p["message_id"]) for p in listed}
        entries: Any = rt.redis.xrange(stream)
        for entry_id, fields in entries:
            sid = _stream_id(entry_id)
            if sid > last or sid in pending:
                found.add(orjson.loads(fields[b"s"])["r"])
    return found
