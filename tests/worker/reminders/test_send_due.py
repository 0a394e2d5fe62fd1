"""A reminders run against real PostgreSQL, Redis and an SMTP server (aiosmtpd) in this process."""

from __future__ import annotations

import psycopg
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.worker.reminders.conftest import PUBLIC_URL, Recorder, Runner, Signer, statuses
from worker.drain.petitions import set_status
from worker.pipeline.wording import call_to_action
from worker.reminders.tokens import make_token
from worker.runtime import Runtime
from worker.settings import Settings

TITLE = "Tell Massachusetts Governor Deval Patrick: Don't Jump on the Anti-Immigrant Bandwagon"
Db = psycopg.Connection[tuple[object, ...]]


def delivery_of(db: Db, canonical: str, petition_id: int) -> int:
    row = db.execute(
        "SELECT id FROM reminder_deliveries WHERE canonical_email = %s AND petition_id = %s",
        (canonical, petition_id),
    ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def count_of(db: Db, petition_id: int) -> int:
    row = db.execute("SELECT signature_count FROM petitions WHERE id = %s", (petition_id,)).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def test_the_right_people_get_exactly_one_email_with_the_right_text_and_count(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    # Given Clara's open petition with recent signatures, and people who signed an older petition
    clara = make_petition(TITLE, "Clara LONG")
    other = make_petition("Save the library", "Bo BAKER")
    for n in range(3):
        sign(clara.id, f"recent{n}@example.org", opt_in=False)
    sign(other.id, "ann@example.org", "Ann Lee", hours_ago=72)  # opted in: a prospect
    sign(other.id, "Bob.Stone+news@Example.org", "Bob Stone", hours_ago=72)  # opted in: a prospect
    sign(other.id, "carl@example.org", opt_in=False, hours_ago=72)  # never opted in
    sign(other.id, "dora@example.org", hours_ago=72)
    sign(clara.id, "DORA@example.org", opt_in=False)  # already signed Clara's petition
    sign(other.id, "gina@example.org", hours_ago=72)
    third = make_petition("Fix the bridge", "Hal HOLT")
    sign(third.id, "gina@example.org", opt_in=False, hours_ago=48)  # later said no to emails
    sign(other.id, "ivan@example.org", state="fraudulent", hours_ago=72)  # not a real signer
    live = count_of(db, clara.id)

    # When a run goes
    report = run()

    # Then Ann and Bob get one email each, to the address they typed, with Clara's words
    assert mailbox.recipients() == ["Bob.Stone+news@Example.org", "ann@example.org"]
    assert (report.sent, report.failed, report.retrying) == (2, 0, 0)
    ann = mailbox.to("ann@example.org")[0]
    msg = ann.message
    assert msg["Subject"] == "Clara is counting on you"
    assert msg["From"] == "Petitions <reminders@petitions.example.org>"
    assert msg["To"] == "Ann Lee <ann@example.org>"
    token = make_token(rsettings.unsubscribe_secret, delivery_of(db, "ann@example.org", clara.id))
    assert msg["List-Unsubscribe"] == f"<{PUBLIC_URL}/unsubscribe/{token}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for body in (ann.text(), ann.html()):
        assert "Today: Clara is counting on you" in body
        assert call_to_action("Clara LONG", "open", live) in body
        assert f"{PUBLIC_URL}/petitions/{clara.id}" in body
        assert f"{PUBLIC_URL}/unsubscribe/{token}" in body
    assert f"Clara LONG needs your help with “{TITLE}”." in ann.text()
    escaped_title = TITLE.replace("'", "&#39;")
    assert f"Clara LONG needs your help with “{escaped_title}”." in ann.html()
    assert statuses(db) == {
        ("ann@example.org", clara.id): "sent",
        ("bob.stone@example.org", clara.id): "sent",
    }

    # And a second run sends nobody anything
    assert run().sent == 0
    assert len(mailbox.received) == 2


def test_unsubscribed_people_get_none_whether_or_not_the_unsubscribe_was_moved_yet(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    old = make_petition("Old", "Olga OAK")
    first = make_petition("First", "Clara LONG")
    for who in ("ann", "bob", "cy"):
        sign(old.id, f"{who}@example.org", hours_ago=72)
    sign(first.id, "new@example.org", opt_in=False)  # makes `first` eligible
    assert run().sent == 3  # each gets a reminder for `first`, with their own link

    def unsubscribe(who: str) -> None:
        delivery_id = delivery_of(db, f"{who}@example.org", first.id)
        with TestClient(create_app(rsettings)) as client:
            token = make_token(rsettings.unsubscribe_secret, delivery_id)
            assert client.post(f"/unsubscribe/{token}").status_code == 200

    unsubscribe("ann")
    unsubscribe("bob")
    report = run(reminder_batch=0)  # a run that sends nothing still moves unsubscribes in
    assert report.sent == 0
    moved = db.execute("SELECT canonical_email FROM unsubscribes ORDER BY 1").fetchall()
    assert [r[0] for r in moved] == ["ann@example.org", "bob@example.org"]

    unsubscribe("cy")  # after the move: only in Redis
    second = make_petition("Second", "Sam SOO")
    sign(second.id, "x@example.org", opt_in=False)  # makes `second` eligible
    assert run(reminder_min_interval=0).sent == 0
    assert len(mailbox.received) == 3


def test_recently_reminded_people_wait_the_minimum_interval_and_get_one_email_per_run(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    old = make_petition("Old", "Olga OAK")
    busy = make_petition("Busy", "Clara LONG")
    quiet = make_petition("Quiet", "Quinn QUAY")
    sign(old.id, "ann@example.org", hours_ago=200)
    for n in range(3):
        sign(busy.id, f"b{n}@example.org", opt_in=False)
    sign(quiet.id, "q@example.org", opt_in=False)

    # One run: Ann is a prospect of both petitions but gets one email, the busiest petition's
    assert run().sent == 1
    assert mailbox.to("ann@example.org")[0].message["Subject"] == "Clara is counting on you"
    # Within REMINDER_MIN_INTERVAL she gets nothing more
    assert run().sent == 0
    # With no minimum interval the next run may send her the other one, still one per run
    assert run(reminder_min_interval=0).sent == 1
    assert mailbox.to("ann@example.org")[1].message["Subject"] == "Quinn is counting on you"
    assert run(reminder_min_interval=0).sent == 0
    assert set(statuses(db).values()) == {"sent"}


def test_closed_and_victory_petitions_get_no_reminders(
    make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, rt: Runtime
) -> None:
    old = make_petition("Old", "Olga OAK")
    sign(old.id, "ann@example.org", hours_ago=200)
    for status in ("closed", "victory"):
        petition = make_petition(f"{status} one", "Clara LONG")
        sign(petition.id, f"{status}@example.org", opt_in=False)
        set_status(rt.engine, rt.registry, petition.id, status)
    assert run().sent == 0
    assert mailbox.received == []


def test_the_count_is_read_when_each_email_is_rendered(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    clara = make_petition("Count me", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", hours_ago=100)
    sign(old.id, "bob@example.org", hours_ago=100)
    before = count_of(db, clara.id)

    # Five more signatures are persisted while Ann's email is being accepted
    def five_more() -> None:
        if len(mailbox.received) == 0:
            for n in range(5):
                sign(clara.id, f"late{n}@example.org", opt_in=False)

    mailbox.before_data = five_more
    run()
    assert call_to_action("Clara LONG", "open", before) in mailbox.to("ann@example.org")[0].text()
    assert call_to_action("Clara LONG", "open", before + 5) in mailbox.to("bob@example.org")[0].text()


def test_a_run_sends_at_most_reminder_batch_emails_and_the_next_run_goes_on(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder
) -> None:
    clara = make_petition("Batch", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    for n in range(7):
        sign(old.id, f"p{n}@example.org", hours_ago=100)
    assert run(reminder_batch=3, reminder_page_size=2).sent == 3
    assert run(reminder_batch=3, reminder_page_size=2).sent == 3
    assert run(reminder_batch=3, reminder_page_size=2).sent == 1
    assert mailbox.recipients() == [f"p{n}@example.org" for n in range(7)]


def test_each_run_goes_on_where_the_last_stopped_and_newcomers_wait_for_the_next_round(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder
) -> None:
    clara = make_petition("Rounds", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    for n in range(5):
        sign(old.id, f"p{n}@example.org", hours_ago=100)
    assert run(reminder_batch=2, reminder_page_size=2).sent == 2  # p0 p1
    sign(old.id, "a0@example.org", hours_ago=1)  # sorts before the cursor
    assert run(reminder_batch=2, reminder_page_size=2).sent == 2  # p2 p3: no walking back over p0 p1
    assert run(reminder_batch=2, reminder_page_size=2).sent == 1  # p4, then the end of the walk
    assert run(reminder_batch=2, reminder_page_size=2).sent == 1  # a new round: a0
    assert [r.rcpt_tos[0] for r in mailbox.received] == [
        "p0@example.org",
        "p1@example.org",
        "p2@example.org",
        "p3@example.org",
        "p4@example.org",
        "a0@example.org",
    ]


def cursor_of(db: Db, petition_id: int) -> tuple[object, ...] | None:
    return db.execute(
        "SELECT after, idle_after_id IS NOT NULL FROM reminder_cursors WHERE petition_id = %s", [petition_id]
    ).fetchone()


def test_a_petition_whose_round_finds_no_one_then_looks_only_at_new_signatures(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    clara = make_petition("Idle", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "m@example.org", hours_ago=100)
    assert run(reminder_min_interval=0).sent == 1  # a round that found M
    assert cursor_of(db, clara.id) == ("", False)
    assert run(reminder_min_interval=3600).sent == 0  # a round that found no one: idle
    assert cursor_of(db, clara.id) == ("", True)

    # Newcomers, wherever they sort, are found by looking at new signatures only
    sign(old.id, "a@example.org", hours_ago=0.5)
    sign(old.id, "z@example.org", hours_ago=0.5)
    sign(old.id, "n@example.org", opt_in=False, hours_ago=0.5)
    assert run(reminder_min_interval=3600).sent == 2
    assert cursor_of(db, clara.id) == ("", True)
    assert run(reminder_min_interval=3600).sent == 0
    assert mailbox.recipients() == ["a@example.org", "m@example.org", "z@example.org"]


def test_an_idle_petition_gets_a_full_round_again_after_the_minimum_interval(
    rsettings: Settings, make_petition: PetitionFactory, sign: Signer, run: Runner, mailbox: Recorder, db: Db
) -> None:
    clara = make_petition("Idle", "Clara LONG")
    other = make_petition("Other", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(other.id, "o@example.org", opt_in=False)
    sign(other.id, "old@example.org", hours_ago=100)
    # Old was reminded of `other` just now (recorded by hand): Clara's round skips him and goes idle
    db.execute(
        "INSERT INTO reminder_deliveries (petition_id, canonical_email, run_id, status) "
        "VALUES (%s, 'old@example.org', 'earlier', 'sent')",
        [other.id],
    )
    assert run(reminder_min_interval=3600).sent == 0
    assert cursor_of(db, clara.id) == ("", True)
    # Once the minimum interval is over, a full round finds him again
    db.execute("UPDATE reminder_deliveries SET recorded_at = now() - interval '2 hours'")
    db.execute("UPDATE reminder_cursors SET idle_since = now() - interval '2 hours'")
    assert run(reminder_min_interval=3600).sent == 1
    assert mailbox.recipients() == ["old@example.org"]
