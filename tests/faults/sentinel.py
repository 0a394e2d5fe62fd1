"""A Redis primary, its replica and three Sentinels of the test's own, on free loopback ports,
with a short `down-after-milliseconds` so a failover takes a couple of seconds, not thirty.

The same `redis-server` binary runs every part (`--sentinel` for the Sentinels).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.faults.harness import REDIS_SERVER, free_port
from tests.helpers import wait_for

MASTER = "sigmaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class RedisNode:
    """One redis-server (append-only, `everysec`), started again on the same port and files."""

    def __init__(self, root: Path, name: str, replica_of: int | None = None) -> None:
        self.port = free_port()
        self.dir = root / name
        self.dir.mkdir()
        self.replica_of = replica_of
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, replica_of: int | None = None) -> None:
        """Start (again, from its AOF); `replica_of` makes it a replica of that port from now on."""
        self.replica_of = replica_of if replica_of is not None else self.replica_of
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", "redis.log"]
        if self.replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.answers, timeout=15)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.3, socket_timeout=2)

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            return False

    def signal(self, signum: int) -> None:
        assert self.proc is not None and self.proc.poll() is None
        os.kill(self.proc.pid, signum)

    def stop_replicating(self) -> None:
        """REPLICAOF NO ONE: this replica keeps what it has and receives nothing more, as one
        behind a slow link would (a dropped link is re-established at once, and SIGSTOP leaves
        the stream in the socket buffer, so neither makes a replica miss anything)."""
        with self.client() as client:
            client.replicaof("NO", "ONE")

    def kill(self) -> None:
        """SIGKILL: a lost machine (what the process had written, the OS keeps)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SentinelNode:
    def __init__(self, root: Path, name: str, primary: int) -> None:
        self.port = free_port()
        self.conf = root / f"{name}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {root}\nlogfile {root / name}.log\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [REDIS_SERVER, str(self.conf), "--sentinel"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def primary_port(self) -> int | None:
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.3, socket_timeout=1) as client:
                addr = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        return int(addr[1]) if addr else None

    def knows_replicas_and_sentinels(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.3, socket_timeout=1) as client:
                master = client.execute_command("SENTINEL", "master", MASTER)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
        info = dict(zip(master[::2], master[1::2], strict=True)) if isinstance(master, list) else master
        get = lambda k: int(info.get(k, info.get(k.encode(), 0)))  # noqa: E731
        return get("num-slaves") >= 1 and get("num-other-sentinels") >= 2

    def failover(self) -> None:
        """SENTINEL FAILOVER: promote a replica without waiting for the primary to fail (the
        old primary is demoted and lives on as a replica)."""
        with redis.Redis(port=self.port, socket_connect_timeout=0.3, socket_timeout=2) as client:
            client.execute_command("SENTINEL", "FAILOVER", MASTER)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SentinelCluster:
    """`nodes[0]` starts as the primary, the others as its replicas; the Sentinels watch them."""

    def __init__(self, replicas: int = 1) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sigha-"))
        first = RedisNode(self.root, "a")
        self.nodes = [first, *(RedisNode(self.root, f"r{n}", replica_of=first.port) for n in range(replicas))]
        self.sentinels = [SentinelNode(self.root, f"s{n}", first.port) for n in range(3)]

    @property
    def sentinel_list(self) -> str:
        """REDIS_SENTINELS for this cluster."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        wait_for(self.replica_in_sync, timeout=15)
        for sentinel in self.sentinels:
            sentinel.start()
        wait_for(lambda: all(s.knows_replicas_and_sentinels() for s in self.sentinels), timeout=30)

    def primary(self) -> RedisNode:
        """The node the Sentinels name as primary now."""
        ports = {s.primary_port() for s in self.sentinels} - {None}
        port = ports.pop() if len(ports) == 1 else self.nodes[0].port
        return next(n for n in self.nodes if n.port == port)

    def replica(self) -> RedisNode:
        primary = self.primary()
        return next(n for n in self.nodes if n is not primary)

    def replica_in_sync(self) -> bool:
        return all(in_sync(node) for node in self.nodes[1:])

    def wait_promoted(self, old: RedisNode, timeout: float = 30.0) -> float:
        """Wait until every Sentinel names a primary other than `old` and that node accepts
        writes; returns when (monotonic)."""

        def promoted() -> bool:
            ports = {s.primary_port() for s in self.sentinels}
            if len(ports) != 1 or ports == {old.port}:
                return False
            node = self.primary()
            try:
                with node.client() as client:
                    return client.info("replication").get("role") == "master"
            except redis.ConnectionError:
                return False

        wait_for(promoted, timeout=timeout, interval=0.05)
        return time.monotonic()

    def close(self) -> None:
        for part in [*self.sentinels, *self.nodes]:
            part.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def in_sync(node: RedisNode) -> bool:
    """This node is a replica with its link to the primary up."""
    try:
        with node.client() as client:
            info = client.info("replication")
    except redis.ConnectionError:
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"
