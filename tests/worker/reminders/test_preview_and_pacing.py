"""`sigingest reminders preview`, pacing to REMINDER_RATE, and unsubscribes arriving mid-run."""

from __future__ import annotations

import psycopg
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.worker.reminders.conftest import Recorder, Runner, Signer, statuses
from worker.drain.petitions import set_status
from worker.ops.cli import build_parser
from worker.reminders.run import Pacer
from worker.reminders.tokens import make_token
from worker.runtime import Runtime
from worker.settings import Settings

Db = psycopg.Connection[tuple[object, ...]]


def test_preview_prints_who_would_get_what_and_sends_nothing(
    rsettings: Settings,
    make_petition: PetitionFactory,
    sign: Signer,
    mailbox: Recorder,
    db: Db,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clara = make_petition("Save the library", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    for who in ("ann", "bob", "cy"):
        sign(old.id, f"{who}@example.org", who.title(), hours_ago=100)
    bobs = delivery_for(db, old.id, "bob@example.org")  # an email he got before, with its link
    with TestClient(create_app(rsettings)) as client:  # Bob unsubscribed; not yet moved to PostgreSQL
        client.post(f"/unsubscribe/{make_token(rsettings.unsubscribe_secret, bobs)}")

    args = build_parser().parse_args(["reminders", "preview", "--petition", str(clara.id), "--limit", "5"])
    assert args.run(args, rsettings) == 0
    out = capsys.readouterr().out
    assert "To: Ann <ann@example.org>" in out and "To: Cy <cy@example.org>" in out
    assert "bob@example.org" not in out
    assert out.count("Subject: Clara is counting on you") == 2
    assert "Join Clara and 1 other supporter today." in out
    assert mailbox.received == [] and set(statuses(db)) == {("bob@example.org", old.id)}


def test_preview_of_a_closed_petition_says_so(
    rsettings: Settings, make_petition: PetitionFactory, capsys: pytest.CaptureFixture[str], rt: Runtime
) -> None:
    petition = make_petition("Done", "Clara LONG")
    set_status(rt.engine, rt.registry, petition.id, "victory")
    args = build_parser().parse_args(["reminders", "preview", "--petition", str(petition.id)])
    args.run(args, rsettings)
    assert f"petition {petition.id} is victory: no reminders are sent for it" in capsys.readouterr().out


def test_someone_who_unsubscribes_during_a_run_gets_nothing_more(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    clara = make_petition("Clara's", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", hours_ago=100)
    sign(old.id, "bob@example.org", hours_ago=100)
    app = create_app(rsettings)

    bobs = delivery_for(db, old.id, "bob@example.org")  # an email he got before, with its link

    def bob_unsubscribes_while_ann_is_sent() -> None:
        with TestClient(app) as client:
            client.post(f"/unsubscribe/{make_token(rsettings.unsubscribe_secret, bobs)}")

    mailbox.before_data = bob_unsubscribes_while_ann_is_sent
    report = run()
    assert (report.sent, report.skipped) == (1, 1)
    assert mailbox.recipients() == ["ann@example.org"]
    assert statuses(db)[("bob@example.org", clara.id)] == "skipped"


def delivery_for(db: Db, petition_id: int, canonical: str) -> int:
    """A delivery row for a reminder sent long ago (as a run records it), with its id."""
    row = db.execute(
        """INSERT INTO reminder_deliveries
               (petition_id, canonical_email, run_id, status, recorded_at, sent_at)
           VALUES (%s, %s, 'earlier', 'sent', now() - interval '300 days', now() - interval '300 days')
           RETURNING id""",
        (petition_id, canonical),
    ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_the_pacer_spaces_sends_to_the_rate_and_does_not_sleep_when_sending_is_slow() -> None:
    clock = FakeClock()
    pacer = Pacer(4.0, clock, clock.sleep)
    for _ in range(3):
        pacer.wait()
    assert clock.slept == [0.25, 0.25]  # the first goes at once, then 4 a second
    clock.now += 1.0  # a slow send: no catching up in a burst, and no sleep needed
    pacer.wait()
    pacer.wait()
    assert clock.slept == [0.25, 0.25, 0.25]
