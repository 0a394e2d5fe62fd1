"""A worker host's `/metrics`: prefork children write to prometheus-client multiprocess files,
the worker's main process sums them behind one HTTP port (`WORKER_METRICS_PORT`), together with
the queue figures read from Redis at scrape time. Also routes Celery's logging to ours.

Wired by Celery signals from `worker/scheduling/app.py`; only `celery worker` starts the endpoint, so
`celery inspect`, beat or Flower on the same host never touch a running worker's files.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery import signals
from prometheus_client import CollectorRegistry, make_wsgi_app, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from worker.keys import Keys
from worker.observability.access import bearer_allowed
from worker.observability.logs import configure_logging
from worker.observability.queue_stats import QueueCollector
from worker.settings import Settings

log = logging.getLogger("sigingest.metrics")
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def enable_multiprocess(directory: str) -> str:
    """Start this worker's metrics afresh in `directory` (or a new private one when empty) and make
    every metric created from now on, here and in forked children, write there."""
    path = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="sigingest-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # a previous run's counters would be added to ours
        stale.unlink()
    # prometheus-client reads this variable in each process that creates a metric; children
    # inherit it. Setting the value class covers a library imported before this point.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return str(path)


def host_registry(directory: str, settings: Settings) -> CollectorRegistry:
    from worker.connections import redis_client

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    keys = Keys(settings.key_prefix, settings.shards)
    registry.register(
        QueueCollector(redis_client(settings), keys, cache_seconds=settings.metrics_cache_seconds)
    )
    return registry


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a scrape every few seconds would drown the worker's own lines."""


def guarded(app: WSGIApp, token: str) -> WSGIApp:
    """`app` behind `METRICS_TOKEN`: 401 without the bearer token (none set: `app` as it is)."""

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if bearer_allowed(environ.get("HTTP_AUTHORIZATION"), token):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
        return [b"a bearer token is required\n"]

    return wsgi


def serve(registry: CollectorRegistry, host: str, port: int, token: str) -> _Server:
    """prometheus-client's exposition of `registry` on host:port in a daemon thread, behind the
    token when one is set. Raises `OSError` when the port is taken."""
    server = make_server(host, port, guarded(make_wsgi_app(registry), token), _Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def install(settings: Settings) -> None:
    state: dict[str, str] = {}

    def setup_logging(loglevel: Any = None, **kwargs: Any) -> None:
        configure_logging(loglevel or settings.log_level)

    def worker_init(**kwargs: Any) -> None:
        state["dir"] = enable_multiprocess(settings.worker_metrics_dir)

    def worker_ready(**kwargs: Any) -> None:
        if not settings.worker_metrics_port or "dir" not in state:
            return
        try:
            serve(
                host_registry(state["dir"], settings),
                settings.worker_metrics_host,
                settings.worker_metrics_port,
                settings.metrics_token,
            )
            log.info("worker metrics on port %d", settings.worker_metrics_port)
        except OSError as exc:
            log.warning(
                "worker metrics endpoint not started (port %d: %s); set WORKER_METRICS_PORT to a free "
                "port, this worker runs on without it",
                settings.worker_metrics_port,
                exc.strerror,
            )

    def worker_shutdown(**kwargs: Any) -> None:
        if "dir" in state and not settings.worker_metrics_dir:  # ours, private: leave no litter
            shutil.rmtree(state["dir"], ignore_errors=True)

    def child_exit(pid: int | None = None, **kwargs: Any) -> None:
        if "dir" in state:  # forked children inherit it
            mark_process_dead(pid or os.getpid(), state["dir"])  # type: ignore[no-untyped-call]

    signals.setup_logging.connect(setup_logging, weak=False)
    signals.worker_init.connect(worker_init, weak=False)
    signals.worker_ready.connect(worker_ready, weak=False)
    signals.worker_process_shutdown.connect(child_exit, weak=False)
    signals.worker_shutdown.connect(worker_shutdown, weak=False)
