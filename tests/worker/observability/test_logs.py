"""Structured logs: JSON off a terminal, readable on one, one line per batch; and never an email,
a name or a raw IP, at any level, in the intake or in a real worker."""

from __future__ import annotations

import io
import logging
import sys
import uuid
from collections.abc import Iterator

import orjson
import psycopg
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import BEHIND_PROXY, PROXY, Child, settings_env, stop_process, wait_for
from worker.observability.logs import configure_logging
from worker.settings import Settings

SIGNERS = [(f"zz.private.{n}@example.org", f"Quenby Marchetti-{n}", f"203.0.113.{n + 1}") for n in range(40)]


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def persisted(db: psycopg.Connection[tuple[object, ...]]) -> int:
    row = db.execute("SELECT count(*) FROM signatures").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def secrets_in(text: str) -> list[str]:
    """Every email, name and raw IP of the workload that appears in `text` (also lowercased)."""
    lowered = text.lower()
    found = []
    for email, name, ip in SIGNERS:
        for secret in (email, email.split("@")[0], name, name.split()[1], ip):
            if secret.lower() in lowered:
                found.append(secret)
    return found


@pytest.mark.slow
def test_no_email_name_or_ip_reaches_the_logs_at_debug_level(
    settings: Settings,
    make_petition: PetitionFactory,
    db: psycopg.Connection[tuple[object, ...]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    debug = settings.model_copy(update={"log_level": "DEBUG", **BEHIND_PROXY, "drain_slice_seconds": 1.0})
    petition = make_petition()
    intake_log = io.StringIO()
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(debug), client=(PROXY, 50000)) as client:
        configure_logging("DEBUG", stream=intake_log, json=True)
        for email, name, ip in SIGNERS:
            client.post(
                f"/petitions/{petition.id}/signatures",
                json={"email": email, "name": name},
                headers={"x-forwarded-for": ip},
            )
        # duplicates, worker-side rejects, refused and unknown-petition submissions too
        for email, name, ip in SIGNERS[:5]:
            client.post(
                f"/petitions/{petition.id}/signatures",
                json={"email": email.upper(), "name": name},
                headers={"x-forwarded-for": ip},
            )
            client.post(f"/petitions/{petition.id}/signatures", json={"email": f"{name}@nodot", "name": name})
            client.post(f"/petitions/{petition.id}/signatures", json={"email": email})
            client.post("/petitions/999999/signatures", json={"email": email, "name": name})

    worker = Child(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-Q",
            "ingest",
            "-c",
            "1",
            "-n",
            f"logs{uuid.uuid4().hex[:6]}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "DEBUG",
        ],
        env=settings_env(debug, WORKER_METRICS_PORT="0"),
        start_new_session=True,
    )
    try:
        wait_for(lambda: persisted(db) == 41, timeout=60)
    finally:
        worker_log = stop_process(worker)

    # DEBUG really was on: request lines from the intake, debug lines from the worker.
    intake_lines = [orjson.loads(line) for line in intake_log.getvalue().splitlines()]
    requests = [line for line in intake_lines if line["msg"] == "request"]
    assert len(requests) == len(SIGNERS) + 20
    assert {"route", "status", "seconds", "bytes_in"} <= requests[0].keys()
    worker_lines = [orjson.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    assert any(line["level"] == "debug" for line in worker_lines)
    batches = [line for line in worker_lines if line["msg"] == "batch" and line["entries"]]
    assert sum(b["persisted"] for b in batches) == 40
    assert sum(b["duplicate"] for b in batches) == 5
    assert sum(b["rejected"] for b in batches) == 5
    assert all({"seconds", "rejected_by_reason", "dead_lettered"} <= b.keys() for b in batches)

    assert secrets_in(intake_log.getvalue()) == []
    assert secrets_in("\n".join(r.getMessage() + repr(r.__dict__.get("data")) for r in caplog.records)) == []
    assert secrets_in(worker_log) == []


def test_logs_are_json_off_a_terminal_and_readable_on_one() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log = logging.getLogger("sigingest.test")
    pipe, terminal = io.StringIO(), Terminal()
    configure_logging("INFO", stream=pipe)
    log.info("batch", extra={"data": {"persisted": 3, "seconds": 0.01}})
    configure_logging("INFO", stream=terminal)
    log.info("batch", extra={"data": {"persisted": 3, "seconds": 0.01}})
    log.debug("not at INFO")
    line = orjson.loads(pipe.getvalue())
    assert line["msg"] == "batch" and line["persisted"] == 3 and line["level"] == "info"
    assert "INFO" in terminal.getvalue() and "persisted=3 seconds=0.01" in terminal.getvalue()
    assert "not at INFO" not in terminal.getvalue()
