"""The intake's `/metrics` and request accounting: a small pure-ASGI middleware.

Per request it reads a clock twice and adds to a few plain ints of a per-(route, status) tally;
the tallies become Prometheus series only when `/metrics` is scraped, which is cheaper than
bumping prometheus-client counters and a histogram per request (scripts/bench_intake_metrics.py).
Routes are labelled by their template (`/petitions/{petition_id}/signatures`), never by the raw
path. Request lines are logged only at DEBUG, and carry route, status, bytes and time: no
address, no body.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from time import perf_counter

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker import metrics as m
from worker.keys import Keys
from worker.logs import configure_logging
from worker.metrics import LATENCY_BUCKETS, IntakeMetrics
from worker.queue_stats import QueueCollector
from worker.settings import Settings

log = logging.getLogger("sigingest.intake")
UNMATCHED = "unmatched"  # requests no route matched (404s for unknown paths)


class RouteTally:
    """Running figures of one (route, status): plain ints bumped on the event loop, read by the
    collector at scrape time. No locks: one event loop writes, and a scrape that reads a
    half-updated tally is off by one request for one scrape."""

    __slots__ = ("buckets", "bytes_in", "bytes_out", "requests", "seconds")

    def __init__(self) -> None:
        self.requests = 0
        self.seconds = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # last one: +Inf


class RequestCollector(Collector):
    """Exports the tallies as the intake's request metrics (names in worker/metrics.py)."""

    def __init__(self, tallies: dict[tuple[str, int], RouteTally]) -> None:
        self._tallies = tallies

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            m.INTAKE_REQUESTS, "HTTP requests answered", labels=["route", "status"]
        )
        in_bytes = CounterMetricFamily(m.INTAKE_REQUEST_BYTES, "request body bytes", labels=["route"])
        out_bytes = CounterMetricFamily(m.INTAKE_RESPONSE_BYTES, "response body bytes", labels=["route"])
        duration = HistogramMetricFamily(m.INTAKE_REQUEST_DURATION, "request latency", labels=["route"])
        by_route: dict[str, list[RouteTally]] = {}
        for (route, status), tally in sorted(self._tallies.items()):
            requests.add_metric([route, str(status)], tally.requests)
            by_route.setdefault(route, []).append(tally)
        for route, tallies in by_route.items():
            in_bytes.add_metric([route], sum(t.bytes_in for t in tallies))
            out_bytes.add_metric([route], sum(t.bytes_out for t in tallies))
            counts = [sum(column) for column in zip(*(t.buckets for t in tallies), strict=True)]
            cumulative = list(accumulate(counts))
            bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
            duration.add_metric(
                [route], list(zip(bounds, cumulative, strict=True)), sum(t.seconds for t in tallies)
            )
        yield from (requests, duration, in_bytes, out_bytes)


class Tallies:
    """Every (route, status)'s `RouteTally`; `record` adds one answered request. Shared by the
    middleware and the signing route's fast path (api_stub/fast.py), so both count alike."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, int], RouteTally] = {}

    def record(self, method: str, route: str, status: int, elapsed: float, received: int, sent: int) -> None:
        tally = self.by_key.get((route, status))
        if tally is None:
            tally = self.by_key[(route, status)] = RouteTally()
        tally.requests += 1
        tally.seconds += elapsed
        tally.buckets[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
        tally.bytes_in += received
        tally.bytes_out += sent
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request",
                extra={
                    "data": {
                        "method": method,
                        "route": route,
                        "status": status,
                        "bytes_in": received,
                        "bytes_out": sent,
                        "seconds": round(elapsed, 6),
                    }
                },
            )


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, tallies: Tallies) -> None:
        self.app = app
        self.tallies = tallies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status, received, sent = 500, 0, 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            self.tallies.record(scope["method"], route, status, perf_counter() - started, received, sent)


def scrape_registry(settings: Settings, metrics: IntakeMetrics, keys: Keys) -> CollectorRegistry:
    """What `/metrics` serves: this intake process's metrics plus the queue figures read from
    Redis at scrape time. With `API_WORKERS` > 1 each scrape sees one process: run one intake
    process per port (or container) and let Prometheus scrape each."""
    registry = metrics.registry
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=2)
    registry.register(QueueCollector(client, keys))
    return registry


def install(app: Starlette, settings: Settings, keys: Keys) -> Tallies:
    """Add `/metrics`, the request middleware and structured logging to the intake app; returns
    the request tallies, for the signing route's fast path to add to."""
    configure_logging(settings.log_level)
    metrics = IntakeMetrics()
    tallies = Tallies()
    metrics.registry.register(RequestCollector(tallies.by_key))
    registry = scrape_registry(settings, metrics, keys)
    app.state.intake.queue.on_unavailable = metrics.redis_errors.inc
    app.state.metrics = metrics

    async def serve_metrics(request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", serve_metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, tallies=tallies)
    return tallies
