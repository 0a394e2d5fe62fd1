"""A steady load: does the drain keep up, and does it stay level?

`python -m bench.steady RATE SECONDS` offers RATE signatures/s through the intake's Lua append
(the freshness stage's feed) to `celery -A worker worker -Q ingest -c 2`, and prints once a
second the entries not yet read and those read but not acknowledged, and the workers' CPU.
A drain that keeps up holds both near a tick's worth; a backlog that grows while the workers'
CPU falls means they wait on something that grows (it found a plan that read a whole table per
batch). At the end it prints how often PostgreSQL scanned each table whole and how many rows
those scans read.
"""

from __future__ import annotations

import argparse
import time

import psycopg

from bench import latency
from bench.drain import redis_cpu
from bench.env import BenchEnv, add_server_arguments, backlog, cpu_seconds, family, running, start_workers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rate", type=float, help="signatures offered per second")
    p.add_argument("seconds", type=float)
    add_server_arguments(p)
    args = p.parse_args()
    env = BenchEnv(args.pg, args.redis)
    try:
        env.prepare()
        settings, rt = env.fresh("steady")
        workers = start_workers(settings, f"bench-steady-{env.tag}")
        with running(workers):
            time.sleep(4)  # workers up
            pids = family(workers.pid)
            feeder = latency.start_feed(settings, env.petition_ids, args.rate, args.seconds)
            started, cpu_before = time.monotonic(), cpu_seconds(pids)
            feed_before, redis_before = cpu_seconds([feeder.pid]), redis_cpu(rt)
            feed_cpu = 0.0
            while feeder.is_alive():
                time.sleep(1)
                feed_cpu = max(feed_cpu, cpu_seconds([feeder.pid]) - feed_before)  # 0 once it has exited
                unread, pending = backlog(rt)
                cpu = cpu_seconds(pids)
                print(
                    f"t={time.monotonic() - started:5.1f}s unread={unread:7d} pending={pending:6d}"
                    f" worker CPU={cpu - cpu_before:5.2f} s/s",
                    flush=True,
                )
                cpu_before = cpu
            feeder.join()
            if feeder.exitcode != 0:
                raise SystemExit(f"the feed failed (exit code {feeder.exitcode})")
            offered = args.rate * args.seconds
            redis_us = (redis_cpu(rt) - redis_before) / offered * 1e6
            print(
                f"CPU per signature: the feed {feed_cpu / offered * 1e6:.1f} µs (to its last second),"
                f" the Redis server (appends and drain) {redis_us:.1f} µs"
            )
        with psycopg.connect(settings.libpq_url) as conn:
            for table, scans, rows in conn.execute(
                "SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables"
                " WHERE relname IN ('signatures', 'rejected_signatures') ORDER BY relname"
            ):
                print(f"{table}: {scans} whole-table scans, {rows} rows read by them")
        rt.engine.dispose()
        rt.redis.close()
    finally:
        env.cleanup()


if __name__ == "__main__":
    main()
