"""`sigingest` as an operator runs it: a real process against the test database and Redis."""

from __future__ import annotations

import subprocess
import sys

import psycopg

from tests.helpers import settings_env
from worker.runtime import Runtime
from worker.settings import Settings


def sigingest(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.ops.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_petition_create_close_and_victory(
    settings: Settings, rt: Runtime, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    assert sigingest(settings, "migrate").returncode == 0  # already migrated: a no-op
    created = sigingest(
        settings,
        "petition",
        "create",
        "--title",
        "Tell Massachusetts Governor Deval Patrick: Don't Jump on the Anti-Immigrant Bandwagon",
        "--starter",
        "Clara LONG",
        "--starter-email",
        "clara@example.org",
        "--goal",
        "1000",
    )
    assert created.returncode == 0, created.stderr
    petition_id = int(created.stdout.strip())
    row = db.execute(
        "SELECT status, signature_count, goal, starter_name FROM petitions WHERE id = %s", [petition_id]
    ).fetchone()
    assert row == ("open", 1, 1000, "Clara LONG")
    starter = db.execute(
        "SELECT canonical_email, name FROM signatures WHERE petition_id = %s", [petition_id]
    ).fetchall()
    assert starter == [("clara@example.org", "Clara LONG")]
    assert rt.registry.get(petition_id).status == "open"  # type: ignore[union-attr]

    assert sigingest(settings, "petition", "close", str(petition_id)).returncode == 0
    assert rt.registry.get(petition_id).status == "closed"  # type: ignore[union-attr]
    assert sigingest(settings, "petition", "victory", str(petition_id)).returncode == 0
    assert rt.registry.get(petition_id).status == "victory"  # type: ignore[union-attr]


def test_closing_an_unknown_petition_says_so_and_changes_nothing(
    settings: Settings, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    result = sigingest(settings, "petition", "close", "999999")
    assert result.returncode == 1 and "no petition 999999" in result.stderr
    assert db.execute("SELECT count(*) FROM petitions").fetchone() == (0,)
