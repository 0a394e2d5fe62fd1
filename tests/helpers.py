"""Helpers shared by tests: drain until quiet, read the invariant, append raw entries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import psycopg
import pytest

from worker.keys import CONSUMER_GROUP
from worker.pipeline.plan import Row
from worker.runtime import Runtime
from worker.settings import Settings


def backlog(rt: Runtime) -> tuple[int, int]:
    """(entries never delivered, entries pending) over every shard."""
    unread = pending = 0
    for stream in rt.keys.streams():
        if not rt.redis.exists(stream):
            continue
        groups = [g for g in rt.redis.xinfo_groups(stream) if g["name"].decode() == CONSUMER_GROUP]
        if not groups:
            unread += int(rt.redis.xlen(stream))
        for group in groups:
            unread += _lag(rt, stream, group)
            pending += int(group["pending"])
    return unread, pending


def _lag(rt: Runtime, stream: str, group: dict[str, Any]) -> int:
    """Entries not yet delivered to the group. Redis 7 reports `lag` (nil when it cannot tell);
    Redis 6.2 (the embedded server) does not, so count what lies after the last delivered id."""
    if group.get("lag") is not None:
        return int(group["lag"])
    last = group["last-delivered-id"]
    last = last.decode() if isinstance(last, bytes) else str(last)
    return len(rt.redis.xrange(stream, min=f"({last}", max="+"))


def drain_everything(rt: Runtime, timeout: float = 30.0) -> int:
    """Step the drainer until nothing is left unread or pending; returns entries handled."""
    handled = 0
    deadline = time.monotonic() + timeout
    rt.streams.ensure_groups()
    while time.monotonic() < deadline:
        handled += rt.drainer.step()
        unread, pending = backlog(rt)
        if unread == 0 and pending == 0:
            return handled
    raise AssertionError(f"streams did not drain in {timeout}s: {backlog(rt)}")


def signature_row(receipt: str, petition_id: int, email: str) -> Row:
    """A valid stored-signature row for the store's own tests (email used as the person key)."""
    return Row(receipt, petition_id, email, email, "Ann", None, None, False, None, datetime.now(UTC))


class Clock:
    """A drainer's clock that only moves when the drainer sleeps (each reading adds 1 ms)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        self.now += 0.001
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Invariant:
    """The promise, read from the database."""

    signatures: int
    rejected: int
    counts_match: bool
    duplicate_receipts: int


def read_invariant(db: psycopg.Connection[tuple[object, ...]]) -> Invariant:
    signatures = db.execute("SELECT count(*) FROM signatures WHERE receipt NOT LIKE 'starter-%%'").fetchone()
    rejected = db.execute("SELECT count(*) FROM rejected_signatures").fetchone()
    mismatches = db.execute(
        """SELECT count(*) FROM petitions p WHERE p.signature_count <> (
             SELECT count(*) FROM signatures s WHERE s.petition_id = p.id AND s.state = 'validated')"""
    ).fetchone()
    both = db.execute(
        "SELECT count(*) FROM signatures s JOIN rejected_signatures r USING (receipt)"
    ).fetchone()
    assert signatures and rejected and mismatches and both
    return Invariant(int(signatures[0]), int(rejected[0]), mismatches[0] == 0, int(both[0]))  # type: ignore[call-overload]


# The tests' own secrets (the intake, workers and beat refuse to start without real ones).
TEST_SECRETS = {
    "ip_hash_secret": "test-ip-hash-secret-of-at-least-32-characters",
    "csrf_secret": "test-csrf-secret-of-at-least-32-characters",
    "unsubscribe_secret": "test-unsubscribe-secret-of-at-least-32-characters",
}


# The address a test's in-process client connects from when it plays a trusted proxy (TestClient's
# `client=(PROXY, port)`), and the settings that trust it to forward the client's address.
PROXY = "10.255.0.1"
BEHIND_PROXY = {"trusted_proxy_header": "x-forwarded-for", "trusted_proxies": PROXY}


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a child process needs to run with `settings` (a secret the settings
    leave unset takes the tests' own, so the child starts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for name, value in settings.model_dump().items():
        env[name.upper()] = str(TEST_SECRETS[name] if name in TEST_SECRETS and not value else value)
    env.update(extra)
    return env


class Child(subprocess.Popen[bytes]):
    """A child process whose stdout and stderr go to a temporary file, never to a pipe: a pipe
    that nobody reads fills at 64 KiB and then blocks every process writing to it (a Celery
    worker logging one line per batch stopped consuming altogether, main process and pool)."""

    def __init__(self, args: list[str], **kwargs: Any) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the Child)
        super().__init__(args, stdout=self._log, stderr=subprocess.STDOUT, **kwargs)

    def output(self) -> str:
        """Everything printed so far (pread: the child's shared file offset is left alone)."""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def start_worker(
    settings: Settings,
    name: str,
    concurrency: int = 2,
    queues: str = "ingest",
    loglevel: str = "INFO",
    **extra_env: str,
) -> Child:
    """A real Celery worker process (`celery -A worker worker`) for `settings`."""
    return Child(
        [
            *(sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", queues),
            *("-c", str(concurrency), "-n", f"{name}@%h", "--without-mingle", "--without-gossip"),
            *("--loglevel", loglevel),
        ],
        env=settings_env(settings, **extra_env),
        start_new_session=True,
    )


def healthy(url: str) -> bool:
    """The intake at `url` answers its liveness check."""
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def in_ci() -> bool:
    """Running in CI: `CI` set to anything but empty, 0, false or no (CI services set CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_tool(reason: str) -> NoReturn:
    """A tool the test needs is not installed: skip it on a developer's machine, but fail it in
    CI, where a skip would leave the run green with the feature never tested."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: a missing tool fails the run instead of skipping)", pytrace=False)
    pytest.skip(reason)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    """SIGTERM (Celery's warm shutdown), wait (then SIGKILL), and return what it printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if isinstance(proc, Child):
        return proc.output()
    out = proc.stdout.read() if proc.stdout else b""
    return out.decode(errors="replace")
