"""The price of each ACK_DURABILITY: intake rate and p50/p99 for `local`, `replica` and `fsync`
in one run, against a primary and a replica of its own on this box (both append-only,
`everysec`), no workers, no PostgreSQL behind the intake.

    python -m bench.durability --seconds 20 -c 64,256 --runs 3

`fsync` on a server without WAITAOF (Redis < 7.2) runs with `appendfsync always` set for its
step; with WAITAOF it keeps `everysec` and waits for the fsync. One JSON line per step, then a
summary with `replica` and `fsync` as ratios of `local`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench import intake
from bench.env import free_port, stop, wait_until
from worker.drain.durability import WAITAOF_SINCE
from worker.drain.registry import PetitionCard
from worker.runtime import Runtime
from worker.settings import Settings

PETITIONS = 50
MODES = ("local", "replica", "fsync")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.durability", description=__doc__)
    p.add_argument("--seconds", type=int, default=20, help="seconds per step")
    p.add_argument("-c", "--connections", default="64,256", help="wrk concurrency steps")
    p.add_argument("--runs", type=int, default=3, help="rounds over every mode; medians are quoted")
    p.add_argument("--api-workers", type=int, default=1)
    return p.parse_args()


@contextmanager
def redis_pair() -> Iterator[tuple[int, int]]:
    """A primary and its replica on free loopback ports; yields their ports once in sync."""
    root = Path(tempfile.mkdtemp(prefix="sigdur-"))
    ports, procs = (free_port(), free_port()), []
    try:
        for n, port in enumerate(ports):
            (root / str(n)).mkdir()
            argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root / str(n))]
            argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
            argv += ["--replicaof", "127.0.0.1", str(ports[0])] if n else []
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        replica = redis.Redis(port=ports[1])
        if not wait_until(lambda: _link_up(replica), 30):
            raise RuntimeError("the replica did not sync")
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _link_up(replica: redis.Redis) -> bool:
    try:
        return replica.info("replication").get("master_link_status") == "up"
    except redis.ConnectionError:
        return False


@contextmanager
def fsync_server(primary: redis.Redis, mode: str) -> Iterator[None]:
    """`appendfsync always` for the `fsync` step on a server without WAITAOF."""
    version = tuple(int(p) for p in str(primary.info("server")["redis_version"]).split(".")[:2])
    always = mode == "fsync" and version < WAITAOF_SINCE
    if always:
        primary.config_set("appendfsync", "always")
    try:
        yield
    finally:
        if always:
            primary.config_set("appendfsync", "everysec")


def step(
    settings: Settings, mode: str, connections: int, seconds: int, workers: int, tag: str
) -> dict[str, Any]:
    primary = redis.Redis.from_url(settings.redis_url)
    with fsync_server(primary, mode):
        api, base = intake.start_api(settings.model_copy(update={"ack_durability": mode}), workers)
        try:
            data = intake.wrk(base, list(range(1, PETITIONS + 1)), connections, seconds, tag, api.pid)
        finally:
            stop(api)
    intake.empty_streams(Runtime(settings))
    primary.close()
    return {"mode": mode, **data}


def summary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per concurrency: the median rate and p50/p99 of each mode, and each mode's rate as a
    ratio of `local`'s."""
    found: dict[str, Any] = {}
    for c in sorted({s["connections"] for s in steps}):
        medians = {
            mode: {
                figure: statistics.median(
                    s[figure] for s in steps if s["mode"] == mode and s["connections"] == c
                )
                for figure in ("accepted_per_second", "p50_ms", "p99_ms")
            }
            for mode in MODES
        }
        local = medians["local"]["accepted_per_second"] or 1
        for figures in medians.values():
            figures["ratio_to_local"] = round(figures["accepted_per_second"] / local, 3)
        found[f"c{c}"] = medians
    return found


def main() -> None:
    args = parse_args()
    prefix = f"sigdur:{uuid.uuid4().hex[:8]}:"
    steps: list[dict[str, Any]] = []
    with redis_pair() as (primary, _):
        settings = Settings.from_env({}, redis_url=f"redis://127.0.0.1:{primary}/0", key_prefix=prefix)
        Runtime(settings).registry.publish(
            [PetitionCard(i, f"Durable {i}", "Clara LONG", "open", 0) for i in range(1, PETITIONS + 1)]
        )
        for run in range(args.runs):
            for c in (int(x) for x in args.connections.split(",")):
                for mode in MODES:  # interleaved, so drift in the box's load hits every mode alike
                    found = step(settings, mode, c, args.seconds, args.api_workers, f"{prefix}{run}{mode}{c}")
                    print(json.dumps({"run": run, **found}), flush=True)
                    steps.append(found)
    print(json.dumps({"summary": summary(steps)}), flush=True)


if __name__ == "__main__":
    main()
