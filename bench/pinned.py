"""The intake alone, pinned: Granian on one CPU, wrk on the other, no workers, no PostgreSQL.

    flock /tmp/bench.lock python -m bench.pinned --runs 3 --seconds 8 -c 64,256
    python -m bench.pinned --tree /tmp/base ...   # the same, serving another checkout's code

For A/B measurements of the intake's own cost: accepted/s, latency, and the Granian processes'
CPU per request from /proc. The registry is published straight to Redis (the intake reads only
Redis), under a key prefix of its own that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from bench import intake
from bench.env import cpu_seconds, family, stop
from worker.drain.registry import PetitionCard
from worker.runtime import Runtime
from worker.settings import Settings

PETITIONS = 50


def start_api(settings: Settings, tree: Path, workers: int, cpus: str) -> tuple[subprocess.Popen[bytes], str]:
    """The intake of checkout `tree`, pinned to `cpus`."""
    return intake.start_api(settings, workers, ("taskset", "-c", cpus), tree, PYTHONPATH=str(tree))


def profiled(api_pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (collapsed stacks, `--nonblocking`) on the Granian worker process(es) while wrk runs."""
    workers = family(api_pid)[1:] or [api_pid]
    argv = ["py-spy", "record", "-r", "200", "--nonblocking", "-d", str(seconds), "-f", "raw", "-o", str(out)]
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), *argv[1:], "-p", str(workers[0])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_wrk(
    base: str, connections: int, seconds: int, cpus: str, tag: str, api_pid: int
) -> dict[str, object]:
    pids = family(api_pid)
    before = cpu_seconds(pids)
    argv = intake.wrk_argv(base, range(1, PETITIONS + 1), connections, seconds, tag, threads=1)
    out = subprocess.run(["taskset", "-c", cpus, *argv], capture_output=True, text=True, check=True).stdout
    data = intake.wrk_summary(out)
    used = cpu_seconds(pids) - before
    requests = max(int(data["requests"]), 1)
    return {
        "c": connections,
        "accepted_per_s": round(data["accepted"] / (data["duration_us"] / 1e6)),
        "cpu_us_per_request": round(used / requests * 1e6, 1),
        "p50_ms": data["p50_ms"],
        "p99_ms": data["p99_ms"],
        "refused": data["refused"],
        "socket_errors": data["socket_errors"],
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pinned", description=__doc__)
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--label", default="")
    p.add_argument("-c", "--connections", default="64,256")
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument("--api-cpus", default="0")
    p.add_argument("--wrk-cpus", default="1")
    p.add_argument(
        "--py-spy",
        type=Path,
        help="py-spy the first step into this file (collapsed stacks; pip install py-spy)",
    )
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = p.parse_args()
    prefix = f"sigpin:{uuid.uuid4().hex[:8]}:"
    settings = Settings.from_env({}, redis_url=args.redis, key_prefix=prefix)
    rt = Runtime(settings)
    rt.registry.publish(
        [PetitionCard(i, f"Pinned {i}", "Clara LONG", "open", 0) for i in range(1, PETITIONS + 1)]
    )
    api, base = start_api(settings, args.tree, args.api_workers, args.api_cpus)
    try:
        for run in range(args.runs):
            for c in (int(x) for x in args.connections.split(",")):
                spy = profiled(api.pid, args.seconds - 2, args.py_spy) if args.py_spy and run == 0 else None
                step = run_wrk(base, c, args.seconds, args.wrk_cpus, f"{prefix}{run}c{c}", api.pid)
                print(json.dumps({"label": args.label, "run": run, **step}), flush=True)
                if spy:
                    spy.wait()
                    args.py_spy = None
    finally:
        stop(api)
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()
        rt.redis.close()


if __name__ == "__main__":
    main()
