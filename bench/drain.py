"""(a) drain rate and (f) memory: fill the streams, start real Celery workers, time the drain."""

from __future__ import annotations

import time
from typing import Any

from bench.data import Signature, signatures
from bench.env import BenchEnv, backlog, cpu_seconds, family, peak_rss_mb, running, start_workers
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime

CHUNK = 5000


def fill(rt: Runtime, petition_ids: list[int], data: list[Signature], *, start_ms: int | None = None) -> None:
    """XADD every signature to its shard, in the intake's entry format."""
    now = start_ms or time.time_ns() // 1_000_000
    keys = rt.keys
    for offset in range(0, len(data), CHUNK):
        with rt.redis.pipeline(transaction=False) as pipe:
            for i, sig in enumerate(data[offset : offset + CHUNK], offset):
                payload = encode(
                    f"b{i:09d}",
                    petition_ids[sig.petition],
                    now,
                    f"{i:032x}",  # one signer per address, as in a real spike: the abuse limits pass
                    SignatureFields(sig.email, sig.name),
                )
                pipe.xadd(keys.stream(keys.shard_for_email(sig.email)), {"s": payload})
            pipe.execute()


def redis_bytes(rt: Runtime) -> int:
    return sum(int(rt.redis.memory_usage(s, samples=0) or 0) for s in rt.keys.streams())


def backend_pids(rt: Runtime) -> list[int]:
    """PostgreSQL server processes serving the workers (connections to this run's database)."""
    with rt.engine.connect() as conn:
        from sqlalchemy import text

        rows = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return [int(r[0]) for r in rows]


def redis_cpu(rt: Runtime) -> float:
    info = rt.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def stored(rt: Runtime) -> tuple[int, int]:
    with rt.engine.connect() as conn:
        from sqlalchemy import text

        sigs = conn.execute(text("SELECT count(*) FROM signatures WHERE receipt LIKE 'b%'")).scalar_one()
        rej = conn.execute(text("SELECT count(*) FROM rejected_signatures")).scalar_one()
    return int(sigs), int(rej)


def run_drain(env: BenchEnv, n: int, concurrency: int = 2, label: str = "drain") -> dict[str, Any]:
    """One timed drain of `n` signatures by `celery -A worker worker -Q ingest -c concurrency`."""
    settings, rt = env.fresh(label)
    data = signatures(n, tag=label)
    used_before = int(rt.redis.info("memory")["used_memory"])
    fill(rt, env.petition_ids, data)
    memory = {
        "stream_bytes_per_signature": round(redis_bytes(rt) / n, 1),
        "used_memory_bytes_per_signature": round(
            (int(rt.redis.info("memory")["used_memory"]) - used_before) / n, 1
        ),
    }
    proc = start_workers(settings, f"bench-{label}-{env.tag}", concurrency)
    with running(proc):
        deadline = time.monotonic() + 300
        unread, pending = n, 0
        while unread == n and time.monotonic() < deadline:  # workers starting: not timed
            time.sleep(0.005)
            unread, pending = backlog(rt)
        # The clock starts at the first read: the whole of every batch is timed.
        t0, cpu0, redis0 = time.monotonic(), cpu_seconds(family(proc.pid)), redis_cpu(rt)
        pg0 = {pid: cpu_seconds([pid]) for pid in backend_pids(rt)}
        while unread + pending and time.monotonic() < deadline:
            time.sleep(0.02)
            unread, pending = backlog(rt)
        left = unread + pending
        elapsed = time.monotonic() - t0
        pids = family(proc.pid)
        cpu = cpu_seconds(pids) - cpu0
        pg_cpu = sum(cpu_seconds([pid]) - pg0.get(pid, 0.0) for pid in backend_pids(rt))
        redis_used = redis_cpu(rt) - redis0
        rss = {str(pid): round(peak_rss_mb(pid), 1) for pid in pids}
    sigs, rejected = stored(rt)
    drained = n
    result = {
        "n": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "signatures_per_second": round(drained / elapsed),
        "cpu_seconds_per_1000": round(cpu / drained * 1000, 4),
        "postgres_cpu_seconds_per_1000": round(pg_cpu / drained * 1000, 4),
        # The whole shared Redis server's CPU: includes other engineers' load.
        "redis_server_cpu_seconds_per_1000": round(redis_used / drained * 1000, 4),
        "peak_rss_mb": rss,
        "persisted": sigs,
        "rejected": rejected,
        "all_accounted": sigs + rejected == n and left == 0,
        "memory": memory,
    }
    rt.engine.dispose()
    rt.redis.close()
    return result
