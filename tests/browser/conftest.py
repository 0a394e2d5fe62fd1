"""Browser fixtures: headless Chromium, the intake served by Granian on a free localhost port,
and a real Celery worker. Skipped, saying what is missing, when Chromium, node or playwright-core
is not installed (`.ci/run` installs all three); failed instead when `CI` is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.browser.driver import ARTIFACTS, HERE, Browser, Page
from tests.helpers import missing_tool, settings_env, start_worker, stop_process, wait_for
from worker.keys import drainer_lease
from worker.runtime import Runtime
from worker.settings import Settings

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def missing_tools() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium not found at {CHROMIUM}: apt-get install chromium (.ci/run does)"
    if shutil.which("node") is None:
        return "node not found: apt-get install nodejs npm"
    if not (HERE / "node_modules" / "playwright-core" / "package.json").exists():
        return "playwright-core is not installed: (cd tests/browser && npm ci) (.ci/run does)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    reason = missing_tools()
    if reason:
        missing_tool(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    node = shutil.which("node")
    assert node is not None
    chromium = Browser(node, CHROMIUM, ARTIFACTS / "driver.log")
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Page:
    """A fresh browser context (no cookies, no cache) with JavaScript on."""
    return browser.open(javascript=True)


@pytest.fixture
def page_without_js(browser: Browser) -> Page:
    return browser.open(javascript=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def site(settings: Settings) -> Iterator[str]:
    """The intake app as `sigingest api` serves it (Granian), on a free port; yields its base URL."""
    port = free_port()
    log_path = ARTIFACTS / "granian.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "asgi",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-ws",
                "--log-level",
                "warning",
                "api_stub.app:create_app",
            ],
            env=settings_env(settings, PUBLIC_URL=f"http://127.0.0.1:{port}"),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parent.parent.parent,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _answers(f"{base}/healthz") or server.poll() is not None, timeout=30)
            assert server.poll() is None, log_path.read_text()
            yield base
        finally:
            stop_process(server)


def _answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=1).status_code == 200
    except httpx2.HTTPError:
        return False


@pytest.fixture
def worker(settings: Settings, rt: Runtime) -> Iterator[None]:
    """A real Celery worker draining this test's streams, started and holding its drain slot."""
    quick_to_stop = settings.model_copy(update={"drain_slice_seconds": 1.0})
    proc = start_worker(quick_to_stop, f"browser{uuid.uuid4().hex[:8]}", concurrency=1)
    try:
        leases = drainer_lease(rt.keys, "*", 0)
        wait_for(lambda: any(rt.redis.scan_iter(match=leases)) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, "the Celery worker exited"
        yield
    finally:
        output = stop_process(proc)
        (ARTIFACTS / "worker.log").write_text(output[-20_000:])
