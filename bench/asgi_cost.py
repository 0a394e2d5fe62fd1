"""CPU per JSON signature of the intake app itself, called as ASGI in-process: no server, no
network but Redis. `--concurrency` requests at a time, so appends share round trips as under
load. Prints this process's CPU µs per request (median and best of the rounds): the Python
part of the intake's cost, far less disturbed by a busy machine than a wrk run.

    flock /tmp/bench.lock python -m bench.asgi_cost [--tree CHECKOUT] [--concurrency 64]

`--tree` serves another checkout's `api_stub` (run in a subprocess with it first on the path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

Message = dict[str, Any]


async def request(app: Any, method: str, path: str, body: bytes = b"") -> int:
    """Call `app` as an ASGI server would for one JSON request (no network); the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(args: argparse.Namespace, prefix: str) -> list[float]:
    from api_stub.app import create_app
    from worker.drain.registry import PetitionCard, Registry
    from worker.keys import Keys
    from worker.settings import Settings

    settings = Settings.from_env({}, redis_url=args.redis, key_prefix=prefix, log_level="WARNING")
    Registry(redis.Redis.from_url(args.redis), Keys(prefix, settings.shards)).publish(
        [PetitionCard(i, f"Cost {i}", "Clara LONG", "open", 0) for i in range(1, 51)]
    )
    app = create_app(settings)
    counter = 0
    rounds: list[float] = []
    for round_ in range(args.rounds + 1):  # the first one warms up
        started = time.process_time()
        for _ in range(args.requests // args.concurrency):
            bodies = []
            for _ in range(args.concurrency):
                counter += 1
                bodies.append(
                    (counter % 50 + 1, b'{"email":"c%d@example.org","name":"Cost Signer"}' % counter)
                )
            statuses = await asyncio.gather(
                *(request(app, "POST", f"/petitions/{p}/signatures", b) for p, b in bodies)
            )
            assert set(statuses) == {202}, statuses
        if round_:
            rounds.append((time.process_time() - started) / args.requests * 1e6)
    return rounds


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.asgi_cost", description=__doc__)
    p.add_argument("--tree", type=Path)
    p.add_argument("--label", default="")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--requests", type=int, default=6400, help="per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = p.parse_args()
    if args.tree:  # run again in a child with the other checkout first on the path
        argv = sys.argv[1:]
        i = argv.index("--tree")
        env = {**os.environ, "PYTHONPATH": str(args.tree)}
        child = [sys.executable, __file__, *argv[:i], *argv[i + 2 :]]  # this file, their api_stub
        sys.exit(subprocess.run(child, env=env, cwd=args.tree).returncode)
    prefix = f"sigcost:{uuid.uuid4().hex[:8]}:"
    try:
        rounds = asyncio.run(measure(args, prefix))
    finally:
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    print(
        json.dumps(
            {
                "label": args.label,
                "concurrency": args.concurrency,
                "cpu_us_per_request_median": round(statistics.median(rounds), 1),
                "cpu_us_per_request_best": round(min(rounds), 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
