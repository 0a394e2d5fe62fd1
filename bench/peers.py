"""(b) the peers, timed like our drain: queue every message first, start the worker, time from
the first message taken off the queue until every signature is stored or rejected."""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy import text

from bench.data import signatures
from bench.drain import backend_pids
from bench.env import BenchEnv, cpu_seconds, family, running, settings_env, start_celery


def run_peer(env: BenchEnv, kind: str, m: int) -> dict[str, Any]:
    """`kind` is "single" or "batch"; `m` signatures of the same mix as the drain."""
    prefix = f"sigbench:{env.tag}:peer:"
    os.environ.setdefault("PEER_BROKER_PREFIX", prefix)
    os.environ.setdefault("REDIS_URL", env.redis_url)
    from bench import peer_app  # reads the two variables above

    settings, rt = env.fresh(f"peer{kind}")
    env.prefixes.append(prefix)
    task = peer_app.single if kind == "single" else peer_app.batch
    now = time.time_ns() // 1_000_000
    queued = time.monotonic()
    for i, sig in enumerate(signatures(m, tag=f"peer{kind}")):
        task.delay(f"b{i:09d}", env.petition_ids[sig.petition], sig.email, sig.name, now)
    enqueue_rate = m / (time.monotonic() - queued)
    queue_key = f"{prefix}peer_{kind}"
    extra = ["--prefetch-multiplier", "2000"] if kind == "batch" else []
    child_env = settings_env(settings, PEER_BROKER_PREFIX=prefix)
    proc = start_celery("bench.peer_app", f"peer_{kind}", child_env, f"bench-peer{kind}-{env.tag}", 2, *extra)
    with running(proc), rt.engine.connect() as conn:
        deadline = time.monotonic() + 240
        while int(rt.redis.llen(queue_key)) >= m and time.monotonic() < deadline:
            time.sleep(0.005)
        t0, cpu0 = time.monotonic(), cpu_seconds(family(proc.pid))
        pg0 = {pid: cpu_seconds([pid]) for pid in backend_pids(rt)}
        done = 0
        while done < m and time.monotonic() < deadline:
            time.sleep(0.05)
            done = int(
                conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM signatures WHERE receipt LIKE 'b%')"
                        " + (SELECT count(*) FROM rejected_signatures)"
                    )
                ).scalar_one()
            )
            conn.commit()
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(family(proc.pid)) - cpu0
        pg_cpu = sum(cpu_seconds([pid]) - pg0.get(pid, 0.0) for pid in backend_pids(rt))
    rt.engine.dispose()
    rt.redis.close()
    return {
        "kind": kind,
        "n": m,
        "seconds": round(elapsed, 3),
        "signatures_per_second": round(done / elapsed),
        "cpu_seconds_per_1000": round(cpu / max(done, 1) * 1000, 4),
        "postgres_cpu_seconds_per_1000": round(pg_cpu / max(done, 1) * 1000, 4),
        "all_accounted": done == m,
        "enqueue_per_second": round(enqueue_rate),
    }
