"""Email confirmation, in-process (no Celery): how fast the drain stores signatures in
confirmation mode against normal mode, how fast it applies confirmation events, and how many
confirmation emails one mail process sends to a local SMTP sink.

`python -m bench.confirm [N] [RUNS]` (default 20,000 and 3): per run, on fresh databases,
1. normal: N signatures drained by the worker's own `Drainer` in this process (signatures/s);
2. confirm mode: the same N on petitions in confirmation mode, stored `pending`;
3. emails: one `ConfirmationRun` sends the N confirmation emails over one SMTP session to an
   aiosmtpd `Sink` in its own process (emails/s per mail process);
4. confirmations: N confirmation events (one per pending signature) drained (events/s), and
   every one counted exactly once (checked).
Prints JSON: per step the median over the runs, and each run's figure.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import psycopg

from bench.data import signatures
from bench.drain import fill
from bench.env import BenchEnv, backlog, free_port, wait_until
from worker.drain.petitions import sync_registry
from worker.pipeline.entry import encode_confirmation
from worker.reminders.confirmations import ConfirmationRun, ConfirmPolicy
from worker.reminders.run import letterhead
from worker.reminders.tokens import confirm_key
from worker.reminders.transport import SmtpTransport
from worker.runtime import Runtime

CHUNK = 5000


def drain_all(rt: Runtime) -> float:
    """Drain everything queued with this process's drainer; returns entries per second."""
    drainer = rt.drainer
    done, started = 0, time.perf_counter()
    while sum(backlog(rt)):
        done += drainer.step()
    return done / (time.perf_counter() - started)


def confirm_mode(rt: Runtime) -> None:
    with psycopg.connect(rt.settings.libpq_url, autocommit=True) as conn:
        conn.execute("UPDATE petitions SET confirm_email = true")
    sync_registry(rt.engine, rt.registry)


def queue_confirmations(rt: Runtime, db: psycopg.Connection[tuple[object, ...]]) -> int:
    """One confirmation event per pending signature, in the intake's entry format."""
    rows = db.execute("SELECT receipt, petition_id FROM signatures WHERE state = 'pending'").fetchall()
    now = time.time_ns() // 1_000_000
    for offset in range(0, len(rows), CHUNK):
        with rt.redis.pipeline(transaction=False) as pipe:
            for receipt, petition_id in rows[offset : offset + CHUNK]:
                stream = rt.keys.stream(rt.keys.shard_for_email(str(receipt)))
                pipe.xadd(stream, {"s": encode_confirmation(str(receipt), int(petition_id), now)})  # type: ignore[call-overload]
            pipe.execute()
    return len(rows)


def send_emails(rt: Runtime, n: int, port: int) -> float:
    """Emails per second from one process over one SMTP session to the sink on `port`."""
    settings = rt.settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"})
    policy = ConfirmPolicy(batch=n, ttl=settings.confirm_ttl, remind_after=settings.confirm_remind_after)
    with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
        run = ConfirmationRun(
            conn,
            SmtpTransport(settings.smtp_url),
            letterhead(settings),
            confirm_key(settings.unsubscribe_secret),
            policy,
        )
        started = time.perf_counter()
        report = run.run()
        elapsed = time.perf_counter() - started
    assert report.sent == n and report.stopped is None, report.summary()
    return n / elapsed


def one_run(env: BenchEnv, n: int, i: int, port: int) -> dict[str, float]:
    result: dict[str, float] = {}
    _, normal = env.fresh(f"cnormal{i}")
    fill(normal, env.petition_ids, signatures(n, tag=f"cn{i}"))
    result["normal_signatures_per_s"] = drain_all(normal)
    _, rt = env.fresh(f"cconfirm{i}")
    confirm_mode(rt)
    fill(rt, env.petition_ids, signatures(n, tag=f"cc{i}"))
    result["confirm_mode_signatures_per_s"] = drain_all(rt)
    result["confirm_mode_ratio"] = result["confirm_mode_signatures_per_s"] / result["normal_signatures_per_s"]
    with psycopg.connect(rt.settings.libpq_url, autocommit=True) as db:
        pending = int(db.execute("SELECT count(*) FROM signatures WHERE state = 'pending'").fetchone()[0])  # type: ignore[index]
        result["emails_per_s"] = send_emails(rt, pending, port)
        before = int(db.execute("SELECT sum(signature_count) FROM petitions").fetchone()[0])  # type: ignore[index]
        queued = queue_confirmations(rt, db)
        result["confirmations_per_s"] = drain_all(rt)
        after = int(db.execute("SELECT sum(signature_count) FROM petitions").fetchone()[0])  # type: ignore[index]
        assert after - before == queued == pending, (before, after, queued, pending)
    for runtime in (normal, rt):
        runtime.drainer.store.close()
        runtime.engine.dispose()
        runtime.redis.close()
    return result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    env = BenchEnv(
        os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"), redis_url
    )
    port = free_port()
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-u",
            "-c",
            "aiosmtpd.handlers.Sink",
            "-l",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: _answers(port), timeout=15), "the SMTP sink did not start"
        env.prepare()
        results = [one_run(env, n, i, port) for i in range(runs)]
    finally:
        env.cleanup()
        sink.terminate()
        sink.wait(10)
    summary: dict[str, Any] = {"n": n, "runs": runs}
    for key in results[0]:
        values = [r[key] for r in results]
        summary[key] = {"median": round(statistics.median(values), 3), "runs": [round(v, 3) for v in values]}
    print(json.dumps(summary, indent=2))


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
