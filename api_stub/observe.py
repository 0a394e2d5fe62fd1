"""The intake's `/metrics` and request accounting: a small pure-ASGI middleware.

Per request it reads a clock twice and bumps three cached metric children: no per-request
allocation of label sets, no body copies. Routes are labelled by their template
(`/petitions/{petition_id}/signatures`), never by the raw path. Request lines are logged only at
DEBUG, and carry route, status, bytes and time: no address, no body.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.keys import Keys
from worker.logs import configure_logging
from worker.metrics import IntakeMetrics
from worker.queue_stats import QueueCollector
from worker.settings import Settings

log = logging.getLogger("sigingest.intake")
UNMATCHED = "unmatched"  # requests no route matched (404s for unknown paths)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: IntakeMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, int], tuple[Any, Any, Any, Any]] = {}

    def _series(self, route: str, status: int) -> tuple[Any, Any, Any, Any]:
        key = (route, status)
        series = self._children.get(key)
        if series is None:
            m = self.metrics
            series = (
                m.requests.labels(route, str(status)),
                m.duration.labels(route),
                m.request_bytes.labels(route),
                m.response_bytes.labels(route),
            )
            self._children[key] = series
        return series

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
            elapsed = perf_counter() - started
            route = getattr(scope.get("route"), "path", UNMATCHED)
            requests, duration, in_bytes, out_bytes = self._series(route, status)
            requests.inc()
            duration.observe(elapsed)
            if received:
                in_bytes.inc(received)
            if sent:
                out_bytes.inc(sent)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "request",
                    extra={
                        "data": {
                            "method": scope["method"],
                            "route": route,
                            "status": status,
                            "bytes_in": received,
                            "bytes_out": sent,
                            "seconds": round(elapsed, 6),
                        }
                    },
                )


def scrape_registry(settings: Settings, metrics: IntakeMetrics, keys: Keys) -> CollectorRegistry:
    """What `/metrics` serves: this process's intake metrics (or, with `PROMETHEUS_MULTIPROC_DIR`,
    every intake process's) plus the queue figures read from Redis at scrape time."""
    registry = metrics.registry
    if settings.prometheus_multiproc_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=settings.prometheus_multiproc_dir)  # type: ignore[no-untyped-call]
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=2)
    registry.register(QueueCollector(client, keys))
    return registry


def install(app: Starlette, settings: Settings, keys: Keys) -> None:
    """Add `/metrics`, the request middleware and structured logging to the intake app."""
    configure_logging(settings.log_level)
    metrics = IntakeMetrics()
    registry = scrape_registry(settings, metrics, keys)
    app.state.intake.queue.on_unavailable = metrics.redis_errors.inc
    app.state.metrics = metrics

    async def serve_metrics(request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", serve_metrics, methods=["GET"])
    app.add_middleware(MetricsMiddleware, metrics=metrics)
