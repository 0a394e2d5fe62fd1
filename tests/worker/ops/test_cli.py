"""`sigingest` as an operator runs it: a real process against the test database and Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_petition_create_in_confirmation_mode_with_its_text_and_target_then_switch_it(
    settings: Settings, rt: Runtime, db: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    text = tmp_path / "petition.md"
    text.write_text("Governor, please listen.\r\n\r\n- keep services open\x00\n", encoding="utf-8")
    created = sigingest(
        settings,
        "petition",
        "create",
        "--title",
        "Save the library",
        "--starter",
        "Clara LONG",
        "--confirm-email",
        "--text-file",
        str(text),
        "--target",
        "Massachusetts Governor Deval Patrick",
    )
    assert created.returncode == 0, created.stderr
    petition_id = int(created.stdout.strip())
    row = db.execute(
        "SELECT confirm_email, body, target FROM petitions WHERE id = %s", [petition_id]
    ).fetchone()
    assert row == (
        True,
        "Governor, please listen.\n\n- keep services open",
        "Massachusetts Governor Deval Patrick",
    )
    card = rt.registry.get(petition_id)
    assert card is not None and card.confirm_email and card.target == "Massachusetts Governor Deval Patrick"

    switched = sigingest(settings, "petition", "set", str(petition_id), "--no-confirm-email")
    assert switched.returncode == 0 and "no confirmation" in switched.stdout
    assert not rt.registry.get(petition_id).confirm_email  # type: ignore[union-attr]
    assert db.execute("SELECT confirm_email FROM petitions WHERE id = %s", [petition_id]).fetchone() == (
        False,
    )
    assert sigingest(settings, "petition", "set", str(petition_id), "--confirm-email").returncode == 0
    assert rt.registry.get(petition_id).confirm_email  # type: ignore[union-attr]

    missing = sigingest(settings, "petition", "set", "999999", "--confirm-email")
    assert missing.returncode == 1 and "no petition 999999" in missing.stderr
    no_file = sigingest(
        settings, "petition", "create", "--title", "T", "--starter", "S", "--text-file", "/nope"
    )
    assert no_file.returncode == 2 and "nothing created" in no_file.stderr
    bad_utf8 = tmp_path / "latin1.txt"
    bad_utf8.write_bytes(b"caf\xe9")
    refused = sigingest(
        settings, "petition", "create", "--title", "T", "--starter", "S", "--text-file", str(bad_utf8)
    )
    assert refused.returncode == 2
    assert db.execute("SELECT count(*) FROM petitions").fetchone() == (1,)
