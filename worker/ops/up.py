"""`sigingest up` (`make run`): the whole system in one command, stopped cleanly by Ctrl-C.

Starts, as child processes: an embedded Redis and PostgreSQL under `DATA_DIR` (unless
`REDIS_URL` / `DATABASE_URL` are set), then migrations, the intake (Granian), the Celery ingest
workers and Celery beat. SIGINT or SIGTERM stops them in order: beat, workers (warm shutdown:
the batch in flight commits or stays pending for redelivery), the intake, then the servers.
Nothing accepted is lost; the next `up` continues with the same data.

While it runs, `DATA_DIR/up.json` tells other `sigingest` commands (`petition`, `demo`, ...)
where the servers are, so they work against it without any environment.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from worker.keys import INGEST_QUEUE, REMINDERS_QUEUE
from worker.ops.embedded import EmbeddedServerError, Server, start_postgres, start_redis, stop_child, tail
from worker.ops.local_secrets import secrets_for_children
from worker.reminders.outbox import local_sink_address
from worker.settings import Settings

ENDPOINTS_FILE = "up.json"
CHILDREN_FILE = "children.json"  # pids of the intake, workers and beat, for a restart after a crash
READY_TIMEOUT = 90.0


class AlreadyRunning(RuntimeError):
    """Another `sigingest up` holds this data directory."""


class StartError(RuntimeError):
    """Something `up` needs is not there; everything started so far is stopped again."""


@dataclass
class Child:
    """A supervised process: how to ask it to stop, and how long to let it take."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM
    grace: float = 30.0


@dataclass
class Stops:
    """Counts SIGINT/SIGTERM: the first asks for a clean stop, a second one hurries it."""

    count: int = 0
    names: list[str] = field(default_factory=list)

    def handler(self, signum: int, frame: object) -> None:
        self.count += 1
        self.names.append(signal.Signals(signum).name)
        if self.count == 2:
            print("\nstopping faster (a third signal kills what is left)", file=sys.stderr, flush=True)

    def install(self) -> None:
        signal.signal(signal.SIGINT, self.handler)
        signal.signal(signal.SIGTERM, self.handler)


# ---------------------------------------------------------------- where things are


def data_home(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve()


@contextmanager
def locked(home: Path) -> Iterator[None]:
    """Hold `home`'s lock for the life of one `up`: embedded servers have exactly one owner."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another `sigingest up` is running with {home}") from None
        yield


def attach(settings: Settings) -> Settings:
    """`settings` pointed at a running `up`'s servers, for whichever URL the environment left unset.

    A command run beside `make run` (e.g. `sigingest demo`) then finds the embedded servers."""
    try:
        found = json.loads((data_home(settings) / ENDPOINTS_FILE).read_text())
        os.kill(int(found["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return settings
    overrides = {
        name: found[name]
        for name in ("redis_url", "database_url")
        if name not in settings.model_fields_set and found.get(name)
    }
    return with_fields(settings, **overrides) if overrides else settings


def with_fields(settings: Settings, **values: Any) -> Settings:
    """A new Settings with `values` set, keeping which fields the environment set."""
    return Settings.model_validate({**settings.model_dump(exclude_unset=True), **values})


# ---------------------------------------------------------------- children


def child_env(settings: Settings, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(REDIS_URL=settings.redis_url, DATABASE_URL=settings.database_url, PYTHONUNBUFFERED="1")
    # The intake, workers and beat refuse to start without real secrets: a local run makes its own.
    env.update(secrets_for_children(settings, home))
    # A local system's traffic all comes from this machine (the demo, a browser): without this the
    # per-IP rate limits would mark nearly every signature fraudulent. Set ALLOWED_IPS to override.
    env.setdefault("ALLOWED_IPS", "127.0.0.1,::1")
    return env


def spawn(name: str, argv: list[str], env: dict[str, str], logs: Path, **kw: Any) -> Child:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us alone; we stop children in order
        )  # fmt: skip
    return Child(name, process, log, **kw)


def start_children(settings: Settings, home: Path, workers: int, port: int) -> list[Child]:
    """Outbox sink, intake, ingest and reminder workers, beat: stopped in reverse order."""
    env = child_env(settings, home)
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "worker.ops.cli"]
    celery = [sys.executable, "-m", "celery", "-A", "worker"]
    # One node name per host and intake port: stable across restarts, distinct for two systems
    # sharing one Redis (Celery's direct queues are not under KEY_PREFIX).
    worker_args = ["-Q", INGEST_QUEUE, "-c", str(workers), "-n", f"sigingest-{port}@%h"]
    worker_args += ["--loglevel", settings.log_level]
    # A warm shutdown waits for the drain slice in flight and its last batch.
    worker_grace = max(60.0, 4 * settings.drain_slice_seconds + settings.db_retry_max_seconds)
    children = []
    if local_sink_address(settings.smtp_url):
        # Reminders go to .eml files a newcomer can open, not to anybody's inbox.
        children.append(
            spawn("outbox", [*cli, "reminders", "outbox", "--dir", str(home / "outbox")], env, logs)
        )
    reminder_args = ["-Q", REMINDERS_QUEUE, "-c", "1", "-n", f"sigingest-reminders-{port}@%h"]
    # Its own metrics port, beside the ingest worker's.
    reminder_env = {**env, "WORKER_METRICS_PORT": str(settings.worker_metrics_port + 1)}
    return [
        *children,
        spawn("api", [*cli, "api", "--port", str(port)], env, logs),
        spawn("worker", [*celery, "worker", *worker_args], env, logs, grace=worker_grace),
        spawn(
            "reminders",
            [*celery, "worker", *reminder_args, "--loglevel", settings.log_level],
            reminder_env,
            logs,
        ),
        spawn("beat", [*cli, "beat", "--schedule", str(home / "celerybeat-schedule")], env, logs),
    ]


def stop_all(children: list[Child], servers: list[Server], stops: Stops) -> None:
    """Beat, workers, intake, then the servers; each gets its grace unless a second signal came."""
    for child in reversed(children):
        graceful_stop(child.name, child.process, child.stop_signal, child.grace, stops)
    for server in reversed(servers):
        graceful_stop(server.name, server.process, server.stop_signal, 60.0, stops)


def graceful_stop(name: str, process: subprocess.Popen[bytes], sig: int, grace: float, stops: Stops) -> None:
    if process.poll() is not None:
        return
    print(f"  stopping {name} ...", end=" ", flush=True)
    started = time.monotonic()
    hurried_at = stops.count
    process.send_signal(sig)
    deadline = time.monotonic() + grace
    while process.poll() is None and time.monotonic() < deadline:
        if stops.count > max(hurried_at, 1):
            break
        time.sleep(0.05)
    if process.poll() is None:
        # Celery's cold shutdown: unacknowledged work is redelivered, stream entries reclaimed.
        stop_child(process, signal.SIGQUIT if name in ("worker", "beat") else signal.SIGKILL, 10)
    kill_group(process.pid)
    print(f"done in {time.monotonic() - started:.1f}s (exit code {process.returncode})", flush=True)


def kill_group(pgid: int) -> None:
    """Kill whatever is left of a child's session (a Granian or Celery pool process whose parent
    was killed); children start in their own session, so the group holds only their processes."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def record_children(home: Path, children: list[Child]) -> None:
    (home / CHILDREN_FILE).write_text(json.dumps({c.name: c.process.pid for c in children}))


def reap_children(home: Path, grace: float = 15.0) -> None:
    """Stop what a killed supervisor left running (it would hold the port and stale servers).

    Called with the data directory locked, so no live `up` owns these. A pid counts only if it
    still leads its own process group, as our children do (guards against pid reuse)."""
    try:
        pids = [int(pid) for pid in json.loads((home / CHILDREN_FILE).read_text()).values()]
    except (OSError, ValueError, TypeError, AttributeError):
        return
    leaders = [pid for pid in pids if _leads_group(pid)]
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_leads_group(pid) for pid in leaders) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in leaders:
        kill_group(pid)
    if leaders:
        print(f"stopped {len(leaders)} processes left over from an earlier run", flush=True)
    (home / CHILDREN_FILE).unlink(missing_ok=True)


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (ProcessLookupError, OSError):
        return False


# ---------------------------------------------------------------- the command


def wait_ready(url: str, children: list[Child], stops: Stops) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and not stops.count:
        if any(c.process.poll() is not None for c in children):
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def intake_url(settings: Settings, port: int) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{port}"


def banner(settings: Settings, url: str, home: Path, servers: list[Server], workers: int) -> str:
    embedded = {s.name for s in servers}
    where = f"{home}"
    lines = [
        "sigingest is up",
        f"  intake    {url}   (POST /petitions/{{id}}/signatures, GET /petitions/{{id}}, /healthz)",
        f"  workers   celery -A worker worker -Q ingest, {workers} processes; -Q reminders, 1 process",
        f"  beat      celery -A worker beat, schedule {where}/celerybeat-schedule",
        f"  outbox    {where}/outbox/   (reminder emails as .eml files; SMTP sink at {settings.smtp_url})"
        if local_sink_address(settings.smtp_url)
        else f"  smtp      {settings.smtp_url}",
        f"  redis     {settings.redis_url}"
        + (f"   (embedded, AOF everysec, data {where}/redis)" if "redis" in embedded else "   (external)"),
        f"  postgres  {settings.database_url}"
        + (f"   (embedded, data {where}/postgres)" if "postgres" in embedded else "   (external)"),
        f"  logs      {where}/logs/",
        "  try       sigingest demo --signatures 20000",
        "Ctrl-C stops everything cleanly; the next `make run` continues with the same data.",
    ]
    return "\n".join(lines)


def start_servers(settings: Settings, home: Path) -> tuple[Settings, list[Server]]:
    servers: list[Server] = []
    overrides: dict[str, str] = {}
    try:
        if "redis_url" not in settings.model_fields_set:
            redis_log = home / "logs" / "redis.log"
            servers.append(start_redis(home / "redis", redis_log, maxmemory=settings.redis_maxmemory))
            overrides["redis_url"] = servers[-1].url
        if "database_url" not in settings.model_fields_set:
            servers.append(start_postgres(home / "postgres", home / "logs" / "postgres.log"))
            overrides["database_url"] = servers[-1].url
    except BaseException:
        for server in reversed(servers):
            server.stop()
        raise
    return with_fields(settings, **overrides), servers


def supervise(settings: Settings, home: Path, workers: int, port: int, stops: Stops) -> int:
    from worker.db.migrate import upgrade

    reap_children(home)
    settings, servers = start_servers(settings, home)
    children: list[Child] = []
    endpoints = home / ENDPOINTS_FILE
    try:
        if stops.count:
            return 0
        try:
            upgrade(settings.sqlalchemy_url)
        except OperationalError as exc:
            raise StartError(f"cannot migrate the database at DATABASE_URL: {exc.orig or exc}") from None
        children = start_children(settings, home, workers, port)
        record_children(home, children)
        url = intake_url(settings, port)
        if not wait_ready(url, children, stops):
            return 0 if stops.count else report_failure(children)
        write_endpoints(endpoints, url, settings)
        print(banner(settings, url, home, servers, workers), flush=True)
        while not stops.count:
            if any(c.process.poll() is not None for c in children):
                return report_failure(children)
            time.sleep(0.2)
        print(f"\n{stops.names[0]} received: stopping cleanly", flush=True)
        return 0
    finally:
        endpoints.unlink(missing_ok=True)
        stop_all(children, servers, stops)
        (home / CHILDREN_FILE).unlink(missing_ok=True)
        print("stopped", flush=True)


def write_endpoints(path: Path, url: str, settings: Settings) -> None:
    found = {"pid": os.getpid(), "intake_url": url}
    found.update(redis_url=settings.redis_url, database_url=settings.database_url)
    path.write_text(json.dumps(found))


def report_failure(children: list[Child]) -> int:
    if all(child.process.poll() is None for child in children):
        logs = children[0].log.parent
        print(f"error: the intake did not answer /readyz within {READY_TIMEOUT:.0f}s (is Redis at "
              f"REDIS_URL reachable?); stopping everything. Logs: {logs}", file=sys.stderr)  # fmt: skip
    for child in children:
        code = child.process.poll()
        if code is not None:
            print(f"error: {child.name} exited with code {code}; stopping the rest. Its log {child.log}:",
                  file=sys.stderr)  # fmt: skip
            print(tail(child.log, 30), file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    stops = Stops()
    stops.install()
    home = data_home(settings)
    workers = args.workers or settings.worker_concurrency
    port = args.port if args.port is not None else settings.port
    try:
        with locked(home):
            return supervise(settings, home, workers, port, stops)
    except AlreadyRunning as exc:
        print(f"error: {exc}; stop it first (Ctrl-C there) or set DATA_DIR", file=sys.stderr)
        return 2
    except (EmbeddedServerError, StartError) as exc:
        print(f"error: {exc}\neverything started was stopped again", file=sys.stderr)
        return 1


def register(sub: Any) -> None:
    up = sub.add_parser("up", help="run everything: embedded servers, migrations, intake, workers, beat")
    up.add_argument("--port", type=int, help="intake port (default: PORT, 8000)")
    up.add_argument("--workers", type=int, help="worker processes (default: WORKER_CONCURRENCY, 1 per core)")
    up.set_defaults(run=cmd_up, attach=False)  # `up` starts servers; it never attaches to them
