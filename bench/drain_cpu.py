"""CPU per signature of one drain process, by phase, in-process (no Celery, no profiler).

`python -m bench.drain_cpu [N] [RUNS]`: fills N bench signatures (as `bench/drain.py` does), drains
them with the worker's own `Drainer` in this process, and prints per run: signatures/s, this
process's CPU, its PostgreSQL backend's CPU (from /proc) and the Redis server's CPU (INFO, the
whole shared server), each in µs per signature, and our CPU split by phase (thread CPU time
around the drainer's collaborators). Quicker and steadier than a full `python -m bench` drain
for before/after pairs; the Celery hand-over between slices is not in it.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.data import signatures
from bench.drain import fill, redis_cpu
from bench.env import BenchEnv, backlog, cpu_seconds

PHASES: dict[str, float] = defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            PHASES[name] += time.thread_time() - started

    return wrapper


def instrument(drainer: Any) -> None:
    """Wrap the drainer's collaborators so each phase's CPU time is summed in PHASES."""
    streams = drainer.streams
    streams.read = timed("read", streams.read)
    streams.ack = timed("ack+trim", streams.ack)
    drainer.store.write = timed("store", drainer.store.write)
    drainer.registry.raise_counts = timed("live counts", drainer.registry.raise_counts)
    if drainer._abuse is not None:
        drainer._abuse = timed("abuse", drainer._abuse)
    if drainer._on_batch is not None:
        drainer._on_batch = timed("observe", drainer._on_batch)


def instrument_module() -> None:
    import worker.drain.drainer as drain_module

    drain_module.plan_batch = timed("plan", drain_module.plan_batch)  # type: ignore[assignment]


def one_run(env: BenchEnv, n: int, label: str) -> dict[str, float]:
    overrides = {"batch_size": int(os.environ["BATCH_SIZE"])} if os.environ.get("BATCH_SIZE") else {}
    _, rt = env.fresh(label, **overrides)
    fill(rt, env.petition_ids, signatures(n, tag=label))
    drainer = rt.drainer
    PHASES.clear()
    instrument(drainer)
    drainer.step()  # connects and reads a first batch: not timed below
    if os.environ.get("DRAIN_GC") == "off":
        gc.disable()
    elif os.environ.get("DRAIN_GC") == "freeze":
        gc.freeze()
    elif os.environ.get("DRAIN_GC") == "tuned":
        gc.freeze()
        gc.set_threshold(50_000, 20, 10)
    PHASES.clear()
    backend = drainer.store._connection().info.backend_pid
    t0, me0, pg0, r0 = time.perf_counter(), time.process_time(), cpu_seconds([backend]), redis_cpu(rt)
    done = 0
    while sum(backlog(rt)):
        done += drainer.step()
    wall = time.perf_counter() - t0
    result = {
        "per_s": done / wall,
        "worker_us": (time.process_time() - me0) / done * 1e6,
        "pg_us": (cpu_seconds([backend]) - pg0) / done * 1e6,
        "redis_us": (redis_cpu(rt) - r0) / done * 1e6,
    }
    result.update({f"phase {k}": v / done * 1e6 for k, v in PHASES.items()})
    drainer.store.close()
    rt.engine.dispose()
    rt.redis.close()
    return result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    env = BenchEnv("postgresql://postgres@127.0.0.1:5432/postgres", redis_url)
    instrument_module()
    try:
        env.prepare()
        results = [one_run(env, n, f"cpu{i}") for i in range(runs)]
    finally:
        env.cleanup()
    for key in results[0]:
        values = [r[key] for r in results]
        runs = " ".join(f"{v:.1f}" for v in values)
        print(f"{key:>20}: median {statistics.median(values):9.1f}   runs {runs}")


if __name__ == "__main__":
    main()
