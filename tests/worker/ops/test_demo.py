"""`sigingest demo` end to end: a real intake (Granian) and a real Celery worker, a small spike."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import orjson
import psycopg
import pytest

from tests.helpers import Child, healthy, settings_env, start_worker, stop_process, wait_for
from worker.ops.cli import build_parser
from worker.ops.demo.data import SEED_STARTER, SEED_TITLE, Kind, SpikeShape, plan_spike
from worker.ops.embedded import free_port
from worker.pipeline.emails import EmailChecker
from worker.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def intake(settings: Settings) -> Iterator[str]:
    port = free_port()
    process = Child(
        [sys.executable, "-m", "worker.ops.cli", "api", "--port", str(port)],
        env=settings_env(settings),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for(lambda: healthy(url), timeout=60, interval=0.1)
        yield url
    finally:
        stop_process(process)


def demo(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(["demo", *argv])
    code: int = args.run(args, settings)
    return code


def test_the_spike_plan_has_the_asked_shares_and_every_duplicate_canonicalises_to_its_signer() -> None:
    plan = plan_spike(SpikeShape(1000, 0.2, 0.1), "abc123", seed=1)
    kinds = [s.kind for s in plan]
    assert kinds.count(Kind.DUPLICATE) == 200
    assert kinds.count(Kind.INVALID) + kinds.count(Kind.MALFORMED) == 100
    checker = EmailChecker()
    canonical: dict[int, set[str]] = {}
    for s in plan:
        email = str(orjson.loads(s.body)["email"])
        if s.kind in (Kind.UNIQUE, Kind.DUPLICATE):
            canonical.setdefault(s.signer, set()).add(checker.check(email).canonical)
    assert len(canonical) == 700 and all(len(forms) == 1 for forms in canonical.values())
    assert len({next(iter(forms)) for forms in canonical.values()}) == 700


def test_demo_sends_a_spike_and_its_summary_checks_out_twice_on_the_same_petition(
    settings: Settings,
    intake: str,
    db: psycopg.Connection[tuple[object, ...]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = start_worker(settings, f"demo{uuid.uuid4().hex[:8]}", concurrency=1)
    try:
        # When the demo fires 300 submissions, 20% duplicates and 10% invalid
        args = ("--url", intake, "--signatures", "300", "--duplicate-share", "0.2", "--invalid-share", "0.1",
                "--concurrency", "8", "--wait", "120")  # fmt: skip
        assert demo(settings, *args) == 0
        first = capsys.readouterr().out
        # Then the seed petition has its starter and the 210 unique valid signers
        row = db.execute(
            "SELECT id, signature_count FROM petitions WHERE title = %s", (SEED_TITLE,)
        ).fetchone()
        assert row is not None and row[1] == 211
        assert "created petition" in first and "all checks passed" in first
        assert "Join Clara and 210 supporters today." in first
        # And a second run reuses the petition with new people, then marks it a victory
        assert demo(settings, *args, "--victory") == 0
        second = capsys.readouterr().out
    finally:
        stop_process(worker)
    assert f"reusing petition {row[0]}" in second
    assert "This petition made change with 421 supporters!" in second
    starters = db.execute(
        "SELECT count(*) FROM petitions WHERE starter_name = %s", (SEED_STARTER,)
    ).fetchone()
    assert starters == (1,)


def test_demo_exits_1_when_the_database_does_not_match_what_was_accepted(
    settings: Settings, intake: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no worker at all: accepted signatures never reach PostgreSQL within the wait
    code = demo(settings, "--url", intake, "--signatures", "40", "--concurrency", "4", "--wait", "1")
    out = capsys.readouterr().out
    assert code == 1
    assert "MISMATCH" in out


def test_demo_exits_2_with_a_clear_error_when_no_intake_answers(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = demo(settings, "--url", f"http://127.0.0.1:{free_port()}", "--signatures", "10")
    assert code == 2
    assert "no intake answers" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [("--signatures", "0"), ("--concurrency", "0"), ("--duplicate-share", "0.7", "--invalid-share", "0.5")],
    ids=["no signatures", "no clients", "shares over 1"],
)
def test_demo_refuses_a_spike_it_cannot_shape_and_sends_nothing(
    settings: Settings, argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo(settings, "--url", f"http://127.0.0.1:{free_port()}", *argv) == 2
    assert "nothing more was sent" in capsys.readouterr().out
