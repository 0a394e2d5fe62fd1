"""`sigingest up` on a fresh directory with no REDIS_URL / DATABASE_URL: embedded servers, intake,
workers and beat; SIGTERM stops everything cleanly; a second start keeps the data."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import PetitionFactory
from tests.helpers import wait_for
from tests.servers import scratch_dir
from worker.ops.embedded import free_port
from worker.reminders.tokens import make_token
from worker.settings import Settings

pytestmark = pytest.mark.slow

SERVER_VARIABLES = ("REDIS_URL", "DATABASE_URL", "CELERY_BROKER_URL", "DATA_DIR", "PORT", "KEY_PREFIX")


SIGINGEST_UP = [sys.executable, "-m", "worker.ops.cli", "up"]


def up_env(port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES and not k.startswith("PYTEST")}
    env.update(PORT=str(port), WORKER_CONCURRENCY="1", DRAIN_SLICE_SECONDS="1", LOG_LEVEL="WARNING")
    env.update(SMTP_URL=f"smtp://127.0.0.1:{free_port()}")  # the outbox sink on a port of its own
    env.update(extra)
    return env


class Up:
    """One `sigingest up` process in `home`, its output in a file (a pipe could fill and block)."""

    def __init__(self, home: Path, port: int, **env: str) -> None:
        self.home, self.port, self.out = home, port, home / f"up-{free_port()}.out"
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                SIGINGEST_UP, cwd=home, env=up_env(port, **env), stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(lambda: self.ready() or self.process.poll() is not None, timeout=120, interval=0.2)
        assert self.ready(), self.output()
        self.endpoints = json.loads((home / ".sigingest" / "up.json").read_text())

    def ready(self) -> bool:
        return "sigingest is up" in self.output()

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def cli(self, *args: str) -> str:
        """A `sigingest` command beside the running system, with no server URLs in its environment."""
        done = subprocess.run([sys.executable, "-m", "worker.ops.cli", *args], cwd=self.home, env=up_env(0),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(120) == 0, self.output()
        return self.output()


@pytest.fixture
def home() -> Iterator[Path]:
    with scratch_dir("sigup-") as path:
        yield path


def persisted(database_url: str, petition_id: int) -> tuple[int, int]:
    """(signature rows, the petition's count) for `petition_id`."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM signatures WHERE petition_id = %s), signature_count"
            " FROM petitions WHERE id = %s",
            (petition_id, petition_id),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def sign(url: str, petition_id: int, emails: range) -> None:
    with httpx.Client(base_url=url) as client:
        for n in emails:
            answer = client.post(
                f"/petitions/{petition_id}/signatures", json={"email": f"s{n}@example.org", "name": "S"}
            )
            assert answer.status_code == 202, answer.text


def test_up_serves_persists_stops_cleanly_and_a_second_start_keeps_the_data(home: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Given `sigingest up` in a fresh directory with no server URLs in its environment
    first = Up(home, port)
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert (home / ".sigingest" / "redis" / "appendonly.aof").exists()
    assert (home / ".sigingest" / "postgres" / "PG_VERSION").exists()
    # with secrets of its own, readable by the owner only
    secrets_file = home / ".sigingest" / "secrets.json"
    made = json.loads(secrets_file.read_text())
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    link = f"{url}/unsubscribe/{make_token(made['UNSUBSCRIBE_SECRET'], 41)}"
    assert httpx.get(link).status_code == 200
    # When a petition is created beside it (the CLI finds the embedded servers) and people sign
    petition_id = int(first.cli("petition", "create", "--title", "Up", "--starter", "Clara LONG"))
    sign(url, petition_id, range(30))
    db = first.endpoints["database_url"]
    wait_for(lambda: persisted(db, petition_id) == (31, 31), timeout=60)
    assert httpx.get(f"{url}/petitions/{petition_id}").json()["call_to_action"] == (
        "Join Clara and 30 supporters today."
    )
    # And more sign just before SIGTERM
    sign(url, petition_id, range(30, 50))
    output = first.stop()
    # Then everything stopped, in order, and nothing is left running
    stopped = [line.split()[1] for line in output.splitlines() if line.startswith("  stopping ")]
    assert stopped == ["beat", "reminders", "worker", "api", "outbox", "postgres", "redis"], output
    assert not (home / ".sigingest" / "up.json").exists()
    assert not (home / ".sigingest" / "postgres" / "postmaster.pid").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")
    # And a second start continues with the same data: every accepted signature is persisted
    second = Up(home, port)
    db = second.endpoints["database_url"]
    wait_for(lambda: persisted(db, petition_id) == (51, 51), timeout=60)
    assert httpx.get(f"{url}/petitions/{petition_id}").json()["signature_count"] == 51
    # with the same secrets: a link mailed before the restart still works
    assert json.loads(secrets_file.read_text()) == made
    assert httpx.post(link).status_code == 200
    second.stop()
    assert processes_in(home) == []


def test_a_second_up_on_the_same_data_refuses_to_start(home: Path) -> None:
    first = Up(home, free_port())
    try:
        done = subprocess.run(SIGINGEST_UP, cwd=home, env=up_env(free_port()),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2
        assert "another `sigingest up` is running" in done.stderr
        assert httpx.get(f"http://127.0.0.1:{first.port}/healthz").status_code == 200
    finally:
        first.stop()


def test_up_reports_a_child_that_cannot_start_and_stops_everything_else(home: Path) -> None:
    # Given the intake's port is taken
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = home / "up.out"
        with out.open("wb") as sink:
            process = subprocess.Popen(SIGINGEST_UP, cwd=home, env=up_env(port),
                                       stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
        # Then up exits 1 naming the intake, and nothing it started is left running
        assert process.wait(120) == 1, out.read_text()
    output = out.read_text()
    assert "error: api exited" in output
    assert not (home / ".sigingest" / "postgres" / "postmaster.pid").exists()
    assert processes_in(home) == []


def processes_in(home: Path) -> list[str]:
    """Command lines of processes working in, or naming, `home` (every child of `up` does one)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cwd = str((proc / "cwd").resolve())
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(home)) or str(home) in cmdline:
            found.append(cmdline)
    return found


def test_up_with_redis_url_and_database_url_uses_those_servers_and_starts_none(
    home: Path, settings: Settings, make_petition: PetitionFactory
) -> None:
    port = free_port()
    up = Up(home, port, REDIS_URL=settings.redis_url, DATABASE_URL=settings.database_url,
            KEY_PREFIX=settings.key_prefix)  # fmt: skip
    try:
        assert "(external)" in up.output()
        assert not (home / ".sigingest" / "redis").exists()
        assert not (home / ".sigingest" / "postgres").exists()
        assert up.endpoints["database_url"] == settings.database_url
        petition = make_petition(title="External")
        sign(f"http://127.0.0.1:{port}", petition.id, range(5))
        wait_for(lambda: persisted(settings.database_url, petition.id) == (6, 6), timeout=60)
    finally:
        up.stop()


def test_up_after_its_supervisor_was_killed_cleans_up_and_continues_with_the_data(home: Path) -> None:
    port = free_port()
    first = Up(home, port)
    petition_id = int(first.cli("petition", "create", "--title", "Crash", "--starter", "Clara LONG"))
    sign(f"http://127.0.0.1:{port}", petition_id, range(10))
    # When the supervisor dies without stopping anything (kill -9): its children keep running
    first.process.kill()
    first.process.wait()
    assert processes_in(home) != []
    # Then a new `up` stops the leftovers, takes the same port and still has every signature
    second = Up(home, port)
    assert "left over from an earlier run" in second.output()
    wait_for(lambda: persisted(second.endpoints["database_url"], petition_id) == (11, 11), timeout=60)
    second.stop()
    assert processes_in(home) == []


def test_up_with_a_database_url_nobody_answers_says_so_and_starts_nothing(home: Path) -> None:
    env = up_env(free_port(), DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    done = subprocess.run(SIGINGEST_UP, cwd=home, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert "cannot migrate the database at DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert processes_in(home) == []


def test_up_sends_reminders_through_beat_into_the_outbox(home: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Given `sigingest up` with beat running reminders every 2 s
    up = Up(home, port, REMINDER_EVERY="2", REMINDER_MIN_RECENT="1")
    try:
        # And Ann, who signed one petition and asked to hear about others
        first = int(up.cli("petition", "create", "--title", "Save the library", "--starter", "Bo Li"))
        with httpx.Client(base_url=url) as client:
            ann = {"email": "ann@example.org", "name": "Ann", "opt_in": True}
            answer = client.post(f"/petitions/{first}/signatures", json=ann)
            assert answer.status_code == 202
        wait_for(lambda: persisted(up.endpoints["database_url"], first) == (2, 2), timeout=60)
        # When Clara LONG starts another petition
        title = "Tell Massachusetts Governor Deval Patrick: Don't Jump on the Anti-Immigrant Bandwagon"
        up.cli("petition", "create", "--title", title, "--starter", "Clara LONG")
        # Then beat's run writes Ann's reminder into the outbox as an .eml file
        outbox = home / ".sigingest" / "outbox"
        wait_for(lambda: any(outbox.glob("*.eml")), timeout=90, interval=0.5)
        [message] = [m.read_text(errors="replace") for m in outbox.glob("*.eml")]
        assert "Subject: Clara is counting on you" in message and "ann@example.org" in message
    finally:
        up.stop()
