"""Cost of the intake's metrics middleware per request: the same app with and without it, called
directly as ASGI (no network, no server), alternating rounds, CPU time of this process, best
round of each (the figures are CPU cost, not latency).

    .venv/bin/python -m bench.intake_metrics [requests-per-round]

GET /healthz isolates the middleware (no I/O); POST .../signatures includes the real Redis append
(against REDIS_URL, under a throwaway key prefix that is deleted afterwards).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

import orjson
import redis

from api_stub.app import create_app
from api_stub.metrics.observe import MetricsMiddleware, Tallies
from bench.asgi_cost import request
from worker.drain.registry import PetitionCard, Registry
from worker.keys import Keys
from worker.settings import Settings


def make_app(settings: Settings, instrumented: bool) -> Any:
    app = create_app(settings)
    if not instrumented:
        app.user_middleware.clear()
    return app


async def rounds(apps: dict[str, Any], method: str, path: str, n: int, repeats: int = 7) -> dict[str, float]:
    timings: dict[str, list[float]] = {name: [] for name in apps}
    counter = 0
    for _ in range(repeats):
        for name, app in apps.items():
            started = time.process_time()  # CPU time: the machine is shared, wall time is noise
            for _ in range(n):
                counter += 1
                body = (
                    orjson.dumps({"email": f"b{counter}@example.org", "name": "B"})
                    if method == "POST"
                    else b""
                )
                await request(app, method, path, body)
            timings[name].append((time.process_time() - started) / n * 1e6)
    return {name: min(t) for name, t in timings.items()}  # the least disturbed round


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


async def main(n: int) -> None:
    # The middleware alone, around an app that does nothing: its whole cost, without app noise.
    isolated = {"without": bare_app, "with": MetricsMiddleware(bare_app, Tallies())}
    result = await rounds(isolated, "GET", "/healthz", n * 10)
    extra = result["with"] - result["without"]
    print(
        f"{'middleware alone':16} without {result['without']:7.1f} us  with {result['with']:7.1f} us  "
        f"cost {extra:+6.1f} us/request"
    )
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    settings = Settings.from_env(key_prefix=prefix, max_backlog=0, log_level="WARNING")
    client = redis.Redis.from_url(settings.redis_url)
    Registry(client, Keys(prefix, settings.shards)).publish(
        [PetitionCard(1, "Bench", "Clara LONG", "open", 1)]
    )
    apps = {"without": make_app(settings, False), "with": make_app(settings, True)}
    try:
        for label, method, path in (
            ("GET /healthz", "GET", "/healthz"),
            ("POST signature", "POST", "/petitions/1/signatures"),
        ):
            await rounds(apps, method, path, max(1, n // 10))  # warm up
            result = await rounds(apps, method, path, n)
            extra = result["with"] - result["without"]
            print(
                f"{label:16} without {result['without']:7.1f} us  with {result['with']:7.1f} us  "
                f"cost {extra:+6.1f} us/request ({extra / result['without'] * 100:+.1f}%)"
            )
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
