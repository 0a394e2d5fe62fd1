"""The intake's `/metrics` and request accounting: a small pure-ASGI middleware.

Per request it reads a clock twice and adds to a few plain ints of a per-(route, status) tally
(api_stub/metrics/tallies.py), which become Prometheus series only when `/metrics` is scraped.
Routes are labelled by their template (`/petitions/{petition_id}/signatures`), never by the raw
path. Request lines are logged only at DEBUG, and carry route, status, bytes and time: no
address, no body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from itertools import accumulate
from time import perf_counter

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_stub.metrics.tallies import RouteTally, Tallies, summed
from api_stub.metrics.tally_files import TallyFiles
from worker.connections import redis_client
from worker.keys import Keys
from worker.observability import metrics as m
from worker.observability.access import bearer_allowed
from worker.observability.logs import configure_logging
from worker.observability.metrics import LATENCY_BUCKETS, IntakeMetrics
from worker.observability.queue_stats import QueueCollector
from worker.settings import Settings

log = logging.getLogger("sigingest.intake")
UNMATCHED = "unmatched"  # requests no route matched (404s for unknown paths)


class RequestCollector(Collector):
    """Exports the tallies of every intake process behind this port as the intake's request
    metrics and Redis errors (names in worker/observability/metrics.py)."""

    def __init__(self, sources: Callable[[], list[Tallies]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        total = summed(self._sources())
        redis_errors = CounterMetricFamily(m.INTAKE_REDIS_ERRORS, "failed Redis calls")
        redis_errors.add_metric([], total.redis_errors)
        requests = CounterMetricFamily(
            m.INTAKE_REQUESTS, "HTTP requests answered", labels=["route", "status"]
        )
        in_bytes = CounterMetricFamily(m.INTAKE_REQUEST_BYTES, "request body bytes", labels=["route"])
        out_bytes = CounterMetricFamily(m.INTAKE_RESPONSE_BYTES, "response body bytes", labels=["route"])
        duration = HistogramMetricFamily(m.INTAKE_REQUEST_DURATION, "request latency", labels=["route"])
        by_route: dict[str, RouteTally] = {}
        for (route, status), tally in sorted(total.routes.items()):
            requests.add_metric([route, str(status)], tally.requests)
            by_route.setdefault(route, RouteTally()).add(tally)
        bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
        for route, t in by_route.items():
            in_bytes.add_metric([route], t.bytes_in)
            out_bytes.add_metric([route], t.bytes_out)
            cumulative = list(accumulate(t.buckets))
            duration.add_metric([route], list(zip(bounds, cumulative, strict=True)), t.seconds)
        yield from (requests, duration, in_bytes, out_bytes, redis_errors)


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
    """What `/metrics` serves: the intake's metrics plus the queue figures read from Redis at
    scrape time."""
    registry = metrics.registry
    client = redis_client(settings, connect_timeout=1, timeout=2)
    registry.register(QueueCollector(client, keys, cache_seconds=settings.metrics_cache_seconds))
    return registry


def install(app: Starlette, settings: Settings, keys: Keys) -> Tallies:
    """Add `/metrics`, the request middleware and structured logging to the intake app; returns
    the request tallies, for the signing route's fast path to add to. With `INTAKE_METRICS_DIR`
    set (`sigingest api --workers N` sets it), every scrape sums all the intake processes behind
    the port (api_stub/metrics/tally_files.py)."""
    configure_logging(settings.log_level)
    metrics = IntakeMetrics()
    tallies = Tallies()
    sources: Callable[[], list[Tallies]] = lambda: [tallies]  # noqa: E731
    if settings.intake_metrics_dir:
        files = TallyFiles(settings.intake_metrics_dir, tallies)
        files.start()
        sources = files.everyone
    metrics.registry.register(RequestCollector(sources))
    registry = scrape_registry(settings, metrics, keys)
    app.state.intake.queue.on_unavailable = tallies.count_redis_error
    app.state.metrics = metrics

    async def serve_metrics(request: Request) -> Response:
        if not bearer_allowed(request.headers.get("authorization"), settings.metrics_token):
            return Response("a bearer token is required\n", 401, {"WWW-Authenticate": "Bearer"})
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", serve_metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, tallies=tallies)
    return tallies
