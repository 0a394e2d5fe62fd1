"""Flower, the Celery monitor, works with our app: it sees an ingest worker, its pool and its
drain tasks (whose arguments are a slot number and a flag, never personal data)."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest

from tests.faults.harness import free_port
from tests.helpers import Child, settings_env, start_worker, stop_process, wait_for
from worker.settings import Settings

pytestmark = pytest.mark.slow


def get(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_flower_lists_the_worker_its_pool_and_its_drain_tasks(settings: Settings) -> None:
    name = f"flower{free_port()}"
    worker = start_worker(settings, name, concurrency=2, WORKER_METRICS_PORT="0")
    port = free_port()
    flower = Child(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}", "--address=127.0.0.1"],
        env=settings_env(settings, FLOWER_UNAUTHENTICATED_API="true"),  # its JSON API, for the test
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def sees_worker() -> bool:
            workers = get(f"{base}/api/workers?refresh=1") or {}
            return any(host.startswith(f"{name}@") and "stats" in info for host, info in workers.items())

        wait_for(sees_worker, timeout=90, interval=1.0)
        workers = get(f"{base}/api/workers") or {}
        (info,) = [info for host, info in workers.items() if host.startswith(f"{name}@")]
        assert info["stats"]["pool"]["max-concurrency"] == 2
        assert "ingest" in {queue["name"] for queue in info["active_queues"]}

        def drain_tasks() -> list[dict[str, Any]]:
            tasks = get(f"{base}/api/tasks?limit=50") or {}
            return [task for task in tasks.values() if task["name"] == "ingest.drain"]

        wait_for(lambda: len(drain_tasks()) >= 2, timeout=60, interval=1.0)
        assert {task["args"] for task in drain_tasks()} <= {"[0, False]", "[1, False]"}  # slot, extra
    finally:
        flower_log = stop_process(flower, timeout=15)
        stop_process(worker)
    assert "Traceback" not in flower_log, flower_log[-3000:]
