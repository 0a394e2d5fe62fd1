"""The benchmark's own database and Redis key prefix, and the processes it starts.

A fresh PostgreSQL database (cloned per run from a migrated template holding the 50 petitions)
and a fresh key prefix per run: the machine's servers are shared, nothing else is touched.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
import redis

from bench.data import PETITIONS
from worker.db.migrate import upgrade
from worker.drain.petitions import create_petition, sync_registry
from worker.keys import CONSUMER_GROUP, Keys
from worker.runtime import Runtime
from worker.settings import SECRETS, Settings

CLK_TCK = os.sysconf("SC_CLK_TCK")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--pg and --redis: the admin URLs of the servers a bench uses (BENCH_DATABASE_URL and
    BENCH_REDIS_URL, else this machine's)."""
    parser.add_argument(
        "--pg", default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@dataclass
class BenchEnv:
    """Admin URLs and the template database; `run()` gives a fresh (settings, runtime) pair."""

    pg_url: str
    redis_url: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    databases: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    petition_ids: list[int] = field(default_factory=list)

    @property
    def template(self) -> str:
        return f"sigbench_tpl_{self.tag}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.pg_url, autocommit=True)

    def prepare(self) -> None:
        """Migrate the template database and create the petitions in it."""
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.template}"')
        self.databases.append(self.template)
        settings = self.settings(self.template, f"sigbench_{self.tag}_tpl:")
        upgrade(settings.sqlalchemy_url)
        rt = Runtime(settings)
        for i in range(PETITIONS):
            card = create_petition(
                rt.engine, rt.registry, title=f"Bench petition {i}", starter_name="Clara LONG"
            )
            self.petition_ids.append(card.id)
        rt.engine.dispose()
        rt.redis.close()

    def settings(self, database: str, prefix: str, **overrides: object) -> Settings:
        return Settings.from_env(
            {},
            redis_url=self.redis_url,
            database_url=with_database(self.pg_url, database),
            key_prefix=prefix,
            **overrides,
        )

    def fresh(self, label: str, **overrides: object) -> tuple[Settings, Runtime]:
        """A new database cloned from the template, a new key prefix, the registry published."""
        name = f"sigbench_{self.tag}_{label}_{uuid.uuid4().hex[:6]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.databases.append(name)
        prefix = f"sigbench:{self.tag}:{label}:{uuid.uuid4().hex[:6]}:"
        self.prefixes.append(prefix)
        settings = self.settings(name, prefix, **overrides)
        rt = Runtime(settings)
        sync_registry(rt.engine, rt.registry)
        rt.streams.ensure_groups()
        return settings, rt

    def cleanup(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        for prefix in [*self.prefixes, f"sigbench_{self.tag}_tpl:"]:
            batch = list(client.scan_iter(match=f"{prefix}*", count=5000))
            for i in range(0, len(batch), 1000):
                client.delete(*batch[i : i + 1000])
        forget_worker_queues(client, f"bench-*-{self.tag}@*")
        client.close()
        with self.admin() as conn:
            for name in reversed(self.databases):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def forget_worker_queues(client: redis.Redis, pattern: str) -> None:
    """Remove our workers' direct queues (`<name>.dq2`: a drain successor may still sit in one)
    and their entries in kombu's shared binding sets; other workers' entries stay."""
    for queue in client.scan_iter(match=f"{pattern}.dq2", count=5000):
        client.delete(queue)
    for binding in ("_kombu.binding.C.dq2", "_kombu.binding_permanent.C.dq2"):
        ours = [m for m in client.sscan_iter(binding, match=pattern)]
        if ours:
            client.srem(binding, *ours)


def backlog(rt: Runtime) -> tuple[int, int]:
    """(entries never read, entries read but not acknowledged) over every shard."""
    with rt.redis.pipeline(transaction=False) as pipe:
        for stream in rt.keys.streams():
            pipe.xinfo_groups(stream)
        replies = pipe.execute()
    unread = pending = 0
    for groups in replies:
        for group in groups:
            if group["name"].decode() == CONSUMER_GROUP:
                unread += int(group.get("lag") or 0)
                pending += int(group["pending"])
    return unread, pending


# The benchmark's own secrets, for a secret the settings leave unset: the intake, workers and
# beat refuse to start without real ones.
BENCH_SECRETS = {name: f"bench-{name}-not-secret-only-for-benchmarks" for name in SECRETS}


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[name.upper()] = str(BENCH_SECRETS[name] if name in BENCH_SECRETS and not value else value)
    env.update(extra)
    return env


def start_workers(
    settings: Settings, name: str, concurrency: int = 2, **extra: str
) -> subprocess.Popen[bytes]:
    """`celery -A worker worker -Q ingest -c N`, as the README runs it."""
    return start_celery("worker", "ingest", settings_env(settings, **extra), name, concurrency)


def start_celery(
    app: str, queue: str, env: dict[str, str], name: str, concurrency: int, *extra: str
) -> subprocess.Popen[bytes]:
    log = open(f"/tmp/{name}.log", "wb")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            queue,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
            *extra,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        stop(proc)


def family(pid: int) -> list[int]:
    """`pid` and its children (a Celery worker's pool processes)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += (int(parts[11]) + int(parts[12])) / CLK_TCK
        except OSError:
            pass
    return total


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


def keys_of(settings: Settings) -> Keys:
    return Keys(settings.key_prefix, settings.shards)
