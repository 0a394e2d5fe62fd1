"""Embedded servers for the tests: the same wheels' binaries `sigingest up` uses.

Used when no `TEST_DATABASE_URL` / `TEST_REDIS_URL` is set and nothing answers on the default
ports (a machine without system PostgreSQL or Redis), when `TEST_SERVERS=embedded` asks for
them, and always by the smoke tests of that path.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.ops.embedded import Server, start_postgres, start_redis


def answers(host: str, port: int) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory PostgreSQL's unprivileged user can pass through (we may be root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def embedded_redis(root: Path, *, durable: bool = False) -> Iterator[Server]:
    server = start_redis(root / "redis", root / "logs" / "redis.log", durable=durable)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def embedded_postgres(root: Path, *, durable: bool = False) -> Iterator[Server]:
    server = start_postgres(root / "postgres", root / "logs" / "postgres.log", durable=durable)
    try:
        yield server
    finally:
        server.stop()
