"""A worker host's `/metrics` endpoint: local only by default, behind `METRICS_TOKEN` when set."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from worker.observability.metrics_server import serve
from worker.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def test_worker_metrics_listen_on_the_loopback_unless_configured() -> None:
    assert Settings.from_env({}).worker_metrics_host == "127.0.0.1"


def test_worker_metrics_need_the_bearer_token_when_one_is_set() -> None:
    registry = CollectorRegistry()
    Counter("sigingest_probe", "a probe", registry=registry).inc()
    port = free_port()
    server = serve(registry, "127.0.0.1", port, "s3cret-token")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        missing = status(url, {})
        wrong = status(url, {"Authorization": "Bearer nope"})
        right = status(url, {"Authorization": "Bearer s3cret-token"})
    finally:
        server.shutdown()
        server.server_close()
    assert missing[0] == wrong[0] == 401 and b"sigingest_probe" not in missing[1] + wrong[1]
    assert right[0] == 200 and b"sigingest_probe_total 1.0" in right[1]
