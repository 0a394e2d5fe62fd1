"""(c) intake over HTTP with wrk: accepted/s and latency at increasing concurrency with our
workers draining, then the intake alone (our workers stopped, PostgreSQL up) with 1 and 2 Granian
workers, then with no PostgreSQL behind it (workers stopped, DATABASE_URL unreachable)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.env import cpu_seconds, family, free_port, settings_env, wait_until
from worker.runtime import Runtime
from worker.settings import Settings

LUA = Path(__file__).with_name("sign.lua")
UNREACHABLE_DB = "postgresql://postgres@127.0.0.1:9/nowhere"  # port 9 (discard): nothing listens


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def start_api(
    settings: Settings, workers: int = 1, prefix: Sequence[str] = (), cwd: Path | None = None, **extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`sigingest api` on a free port, once it answers /readyz; `prefix` wraps the command
    (e.g. `taskset -c 0`), `cwd` runs another checkout (with PYTHONPATH in `extra`)."""
    port = free_port()
    env = settings_env(settings, **extra)
    proc = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "worker.ops.cli",
            "api",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_until(ready, 30):
        proc.kill()
        raise RuntimeError("the intake did not start")
    return proc, base


def wrk_argv(
    base: str, petitions: Sequence[int], connections: int, seconds: int, tag: str, threads: int
) -> list[str]:
    """wrk posting distinct signatures (bench/sign.lua) round `petitions` for `seconds`."""
    return [
        *("wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s"),
        *("-s", str(LUA), base, "--", ",".join(map(str, petitions)), tag),
    ]


def wrk_summary(out: str) -> dict[str, Any]:
    """The JSON summary sign.lua prints on its `WRKJSON` line."""
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    summary: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    return summary


def wrk(
    base: str, petitions: list[int], connections: int, seconds: int, tag: str, api_pid: int = 0
) -> dict[str, Any]:
    cpu0 = cpu_seconds(family(api_pid)) if api_pid else 0.0
    argv = wrk_argv(base, petitions, connections, seconds, tag, threads=min(2, connections))
    data = wrk_summary(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    data["connections"] = connections
    data["accepted_per_second"] = round(data["accepted"] / (data["duration_us"] / 1e6))
    if api_pid:
        used = cpu_seconds(family(api_pid)) - cpu0
        data["api_cpu_seconds_per_1000"] = round(used / max(data["requests"], 1) * 1000, 4)
    return data


def spike_load(base: str, petition: int, connections: int, seconds: int, tag: str) -> subprocess.Popen[str]:
    """wrk in the background at full speed on one petition."""
    return subprocess.Popen(
        wrk_argv(base, [petition], connections, seconds, tag, threads=2),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def empty_streams(rt: Runtime) -> None:
    """Drop every entry of the shard streams (their consumer group stays): for steps run with
    nothing draining, which would otherwise leave ~200 B per accepted signature in Redis."""
    for stream in rt.keys.streams():
        rt.redis.xtrim(stream, maxlen=0)


def settle() -> None:
    time.sleep(1.0)
