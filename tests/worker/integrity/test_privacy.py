"""Export in bounded memory, anonymize and forget keeping counts right, and nothing personal logged."""

from __future__ import annotations

import csv
import io
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tests.conftest import PetitionFactory
from tests.faults.harness import PrivateRedis
from tests.helpers import read_invariant
from tests.worker.integrity.helpers import DB, add_signatures, signature_count, value
from worker.drain.erasures import Erasures
from worker.integrity import privacy
from worker.integrity.privacy import Forgotten, anonymize, export_csv, forget, forget_dead_letters
from worker.keys import Keys
from worker.ops.cli import main
from worker.pipeline.entry import Entry, encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime
from worker.settings import Settings

T0 = datetime(2020, 1, 1, tzinfo=UTC)


class CursorSpy(io.StringIO):
    """Notes, while rows are written, which server-side cursors the connection has open."""

    def __init__(self, db: DB) -> None:
        super().__init__()
        self.db, self.cursors = db, set[object]()

    def write(self, text: str, /) -> int:
        self.cursors |= {name for (name,) in self.db.execute("SELECT name FROM pg_cursors")}
        return super().write(text)


def test_export_writes_validated_signatures_and_email_only_when_asked(
    make_petition: PetitionFactory, db: DB
) -> None:
    petition = make_petition()
    add_signatures(db, petition.id, 2, tag="ok", country="FR", accepted_at=T0)
    add_signatures(db, petition.id, 1, tag="bad", state="fraudulent", accepted_at=T0)
    db.execute("UPDATE signatures SET name = '=HYPERLINK(\"x\")' WHERE receipt = 'ok2'")
    plain = CursorSpy(db)
    assert export_csv(db, petition.id, plain) == 3
    assert plain.cursors == {"sigingest_export"}, "rows come through a server-side cursor"
    rows = list(csv.reader(io.StringIO(plain.getvalue())))
    assert rows[0] == ["name", "country", "postcode", "signed_at"]
    assert rows[1] == ["Name ok1", "FR", "PC1", T0.isoformat()]
    assert rows[2][0] == '\'=HYPERLINK("x")'  # a spreadsheet shows it as text, never runs it
    assert rows[3][0] == "Clara LONG" and "@" not in plain.getvalue()
    with_email = io.StringIO()
    export_csv(db, petition.id, with_email, include_email=True)
    lines = list(csv.reader(io.StringIO(with_email.getvalue())))
    assert lines[0][-1] == "email" and lines[1][-1] == "ok1@example.org"
    with pytest.raises(LookupError):
        export_csv(db, petition.id + 1, io.StringIO())


PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class RssSampler:
    """A sink that keeps nothing and samples this process's resident memory as rows arrive."""

    def __init__(self) -> None:
        self.writes = self.chars = 0
        self.start = self.peak = resident()

    def write(self, text: str, /) -> int:
        self.writes += 1
        self.chars += len(text)
        if self.writes % 200 == 0:
            self.peak = max(self.peak, resident())
        return len(text)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def exported(db: DB, petition_id: int) -> RssSampler:
    sink = RssSampler()
    export_csv(db, petition_id, sink)
    return sink


@pytest.mark.slow
def test_exporting_ten_times_more_signatures_takes_no_more_memory(
    make_petition: PetitionFactory, db: DB
) -> None:
    small, large = make_petition(title="small"), make_petition(title="large")
    add_signatures(db, small.id, 5_000, tag="s", country="DE")
    add_signatures(db, large.id, 50_000, tag="l", country="DE")
    exported(db, small.id)  # warm-up: first-use allocations are not the export's growth
    small_run, large_run = exported(db, small.id), exported(db, large.id)
    assert (small_run.writes, large_run.writes) == (5_002, 50_002)  # header, starter, signers
    # Holding the rows (a client-side cursor, fetchall) grows memory by about twice their CSV
    # size; streaming through the server-side cursor keeps the growth flat, whatever the size.
    extra_memory = large_run.growth - small_run.growth
    extra_output = large_run.chars - small_run.chars
    assert extra_memory < extra_output / 10, (small_run.growth, large_run.growth, extra_output)


def test_the_export_command_writes_a_file(
    make_petition: PetitionFactory,
    db: DB,
    cli_env: None,
    tmp_path: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    petition = make_petition()
    add_signatures(db, petition.id, 3, tag="f")
    target = f"{tmp_path}/out.csv"
    assert main(["export", "--petition", str(petition.id), "--format", "csv", "--output", target]) == 0
    with open(target, encoding="utf-8") as f:
        assert len(f.read().splitlines()) == 5
    assert "exported 4 signatures" in capsys.readouterr().err
    missing = f"{tmp_path}/missing.csv"
    assert main(["export", "--petition", "999999", "--format", "csv", "--output", missing]) == 1
    assert "no petition 999999; nothing exported" in capsys.readouterr().err
    assert not os.path.exists(missing)


def per_country(db: DB, petition_id: int) -> dict[object, object]:
    return dict(
        db.execute(
            "SELECT country, count(*) FROM signatures WHERE petition_id = %s AND state = 'validated' "
            "GROUP BY country",
            [petition_id],
        ).fetchall()
    )


def test_anonymize_replaces_people_on_old_closed_petitions_keeping_counts_and_countries(
    make_petition: PetitionFactory, db: DB, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    old, recent, still_open = (
        make_petition(title="old"),
        make_petition(title="recent"),
        make_petition(title="open"),
    )
    for p in (old, recent, still_open):
        add_signatures(db, p.id, 6, tag=f"fr{p.id}-", country="FR", ip_hash="aa")
        add_signatures(db, p.id, 4, tag=f"de{p.id}-", country="DE")
        add_signatures(db, p.id, 2, tag=f"x{p.id}-", state="invalidated")
    db.execute("UPDATE petitions SET status = 'closed', closed_at = %s WHERE id = %s", [T0, old.id])
    db.execute(
        "UPDATE petitions SET status = 'victory', closed_at = %s WHERE id = %s",
        [T0 + timedelta(days=40), recent.id],
    )
    before = {p.id: (signature_count(db, p.id), per_country(db, p.id)) for p in (old, recent, still_open)}

    assert main(["anonymize", "--closed-before", "2020-02-01"]) == 0
    assert "anonymized 13 signatures" in capsys.readouterr().out

    assert {
        p.id: (signature_count(db, p.id), per_country(db, p.id)) for p in (old, recent, still_open)
    } == before
    people = db.execute(
        "SELECT name, email, canonical_email, postcode, ip_hash, opt_in FROM signatures "
        "WHERE petition_id = %s",
        [old.id],
    ).fetchall()
    assert {(n, p, i, o) for n, _, _, p, i, o in people} == {("anonymized", None, None, False)}
    assert all(str(e).endswith("@anonymized.invalid") and e == c for _, e, c, *_ in people)
    assert (
        value(
            db, "SELECT count(*) FROM signatures WHERE petition_id = %s AND name <> 'anonymized'", recent.id
        )
        == 13
    )
    assert anonymize(db, T0 + timedelta(days=31)) == 0, "a second run changes nothing"
    assert read_invariant(db).counts_match


def test_anonymize_drops_the_reminder_history_of_old_closed_petitions(
    make_petition: PetitionFactory, db: DB
) -> None:
    # Given reminders recorded for an old closed petition and for an open one
    old, still_open = make_petition(title="old"), make_petition(title="open")
    for petition in (old, still_open):
        db.execute(
            "INSERT INTO reminder_deliveries (petition_id, canonical_email, run_id)"
            " VALUES (%s, 'bob@example.org', 'r')",
            [petition.id],
        )
        db.execute(
            "INSERT INTO reminder_cursors (petition_id, after) VALUES (%s, 'bob@example.org')", [petition.id]
        )
    db.execute("UPDATE petitions SET status = 'closed', closed_at = %s WHERE id = %s", [T0, old.id])

    # When old closed petitions are anonymized
    anonymize(db, T0 + timedelta(days=31))

    # Then the old petition's reminder history (addresses) is gone, the open one's stays
    for table in ("reminder_deliveries", "reminder_cursors"):
        kept = db.execute(f"SELECT petition_id FROM {table}").fetchall()
        assert kept == [(still_open.id,)], table


def test_forget_erases_one_person_everywhere_and_adjusts_counts(
    make_petition: PetitionFactory,
    db: DB,
    rt: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b, c = make_petition(title="A"), make_petition(title="B"), make_petition(title="C")
    for p in (a, b, c):
        add_signatures(db, p.id, 3, tag=f"other{p.id}-")
    person = (
        "INSERT INTO signatures (petition_id, receipt, email, canonical_email, name, state, accepted_at) "
    )
    db.execute(
        person
        + "VALUES (%s, 'ann-a', 'Ann.Lee@gmail.com', 'annlee@gmail.com', 'Ann Lee', 'validated', now())",
        [a.id],
    )
    db.execute(
        person + "VALUES (%s, 'ann-b', 'annlee@gmail.com', 'annlee@gmail.com', 'Ann', 'fraudulent', now())",
        [b.id],
    )
    db.execute("UPDATE petitions SET signature_count = signature_count + 1 WHERE id = %s", [a.id])

    with caplog.at_level(logging.DEBUG):
        gone = forget(db, "ann.lee+petition@googlemail.com", publish=rt.registry.set_counts)

    assert gone.signatures == 2 and gone.counts == {a.id: 4}
    assert [signature_count(db, p.id) for p in (a, b, c)] == [4, 4, 4]
    assert value(db, "SELECT count(*) FROM signatures WHERE canonical_email = 'annlee@gmail.com'") == 0
    erased = db.execute(
        "SELECT receipt FROM rejected_signatures WHERE reason = 'erased' ORDER BY 1"
    ).fetchall()
    assert erased == [("ann-a",), ("ann-b",)]
    assert rt.registry.get(a.id).signature_count == 4  # type: ignore[union-attr]
    assert "ann" not in caplog.text.lower() and "gmail" not in caplog.text
    assert forget(db, "annlee@gmail.com").signatures == 0
    assert read_invariant(db).counts_match

    # A late redelivery of one of her entries does not bring her back.
    rt.streams.ensure_groups()
    payload = encode("ann-a", a.id, 1_790_000_000_000, None, SignatureFields("annlee@gmail.com", "Ann Lee"))
    rt.redis.xadd(rt.keys.stream(0), {"s": payload})
    rt.drainer.process(rt.streams.read("c1", 10, 10))
    assert value(db, "SELECT count(*) FROM signatures WHERE canonical_email = 'annlee@gmail.com'") == 0
    assert signature_count(db, a.id) == 4


def holding(db: DB, text: str) -> dict[str, int]:
    """Tables with rows whose text holds `text` (any column), and how many rows."""
    tables = [t for (t,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    found = {t: value(db, f"SELECT count(*) FROM {t} x WHERE x::text ILIKE %s", f"%{text}%") for t in tables}
    return {t: n for t, n in found.items() if n}


def test_forget_also_erases_the_persons_reminder_history(make_petition: PetitionFactory, db: DB) -> None:
    # Given Ann, who signed A, was reminded of B and C, unsubscribed, and at whose address the
    # reminder walk for B stopped; and Bob, reminded of B, at whose address C's walk stopped
    a, b, c = make_petition(title="A"), make_petition(title="B"), make_petition(title="C")
    add_signatures(db, a.id, 3, tag="aaron", domain="example.com")  # before annlee@ in order
    add_signatures(db, a.id, 3, tag="zoe", domain="example.com")  # after it
    db.execute(
        "INSERT INTO signatures (petition_id, receipt, email, canonical_email, name, state, opt_in,"
        " accepted_at) VALUES (%s, 'ann-a', 'Ann.Lee@gmail.com', 'annlee@gmail.com', 'Ann Lee',"
        " 'validated', true, now())",
        [a.id],
    )
    deliveries = (
        "INSERT INTO reminder_deliveries (petition_id, canonical_email, run_id) VALUES (%s, %s, 'r1')"
    )
    for petition, person in ((b, "annlee@gmail.com"), (c, "annlee@gmail.com"), (b, "bob@example.org")):
        db.execute(deliveries, [petition.id, person])
    cursors = "INSERT INTO reminder_cursors (petition_id, after) VALUES (%s, %s)"
    db.execute(cursors, [b.id, "annlee@gmail.com"])
    db.execute(cursors, [c.id, "bob@example.org"])
    db.execute(
        "INSERT INTO unsubscribes (canonical_email, unsubscribed_at) VALUES ('annlee@gmail.com', now())"
    )

    # When she is forgotten
    assert forget(db, "ann.lee@googlemail.com").signatures == 1

    # Then her address is left only in her unsubscribe, Bob's reminder history is untouched, and
    # B's walk goes on from the address just before hers (the same next page, no address of hers)
    assert holding(db, "annlee") == {"unsubscribes": 1}
    assert (
        value(db, "SELECT count(*) FROM reminder_deliveries WHERE canonical_email = 'bob@example.org'") == 1
    )
    assert value(db, "SELECT after FROM reminder_cursors WHERE petition_id = %s", c.id) == "bob@example.org"
    after_b = value(db, "SELECT after FROM reminder_cursors WHERE petition_id = %s", b.id)
    assert after_b == "aaron3@example.com"
    assert (
        value(
            db,
            "SELECT count(*) FROM signatures"
            " WHERE canonical_email > %s AND canonical_email < 'annlee@gmail.com'",
            after_b,
        )
        == 0
    )


def test_forget_clears_reminder_history_left_without_signatures(
    make_petition: PetitionFactory, db: DB
) -> None:
    # Given a reminder row for someone with no signature left (an earlier forget kept these)
    petition = make_petition()
    db.execute(
        "INSERT INTO reminder_deliveries (petition_id, canonical_email, run_id)"
        " VALUES (%s, 'zed@example.org', 'r1')",
        [petition.id],
    )
    db.execute(
        "INSERT INTO reminder_cursors (petition_id, after) VALUES (%s, 'zed@example.org')", [petition.id]
    )

    assert forget(db, "zed@example.org").signatures == 0

    assert holding(db, "zed@") == {}
    assert value(db, "SELECT after FROM reminder_cursors WHERE petition_id = %s", petition.id) == ""


def test_the_forget_command_refuses_a_non_address(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forget", "nobody"]) == 1
    assert "nothing changed" in capsys.readouterr().err


def test_forget_deletes_the_persons_dead_letters_and_keeps_their_receipts_erased(
    make_petition: PetitionFactory, db: DB, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # Given dead letters: one of Ann's, one of Bob's, and a broken payload holding Ann's address
    petition = make_petition()
    for n, (receipt, address) in enumerate([("ann-dl", "Ann.Lee@gmail.com"), ("bob-dl", "bob@example.org")]):
        payload = encode(receipt, petition.id, 1_790_000_000_000, None, SignatureFields(address, "Someone"))
        rt.streams.dead_letter(Entry(0, f"1-{n}", payload, 5), "failed five times")
    rt.streams.dead_letter(Entry(1, "2-0", b"\xff broken annlee@gmail.com", 5), "undecodable")

    # When the person is forgotten (any spelling of her address)
    with caplog.at_level(logging.DEBUG):
        gone = forget_dead_letters(db, rt.redis, rt.keys, "ann.lee+x@googlemail.com")

    # Then her two dead letters are gone, Bob's stays, and her receipt is kept as erased
    left = rt.redis.xrange(rt.keys.dead_letters)
    assert gone == 2 and len(left) == 1 and b"bob@example.org" in left[0][1][b"payload"]
    erased = db.execute("SELECT receipt FROM rejected_signatures WHERE reason = 'erased'").fetchall()
    assert erased == [("ann-dl",)]
    assert "ann" not in caplog.text.lower() and "gmail" not in caplog.text


def test_forget_covers_a_signature_still_queued_which_is_stored_erased(
    make_petition: PetitionFactory, db: DB, rt: Runtime
) -> None:
    # Given Ann's and Bob's signatures queued, not yet drained
    petition = make_petition()
    rt.streams.ensure_groups()
    for receipt, address in [("ann-q", "Ann.Lee@gmail.com"), ("bob-q", "bob@example.org")]:
        payload = encode(receipt, petition.id, 1_790_000_000_000, None, SignatureFields(address, "Someone"))
        rt.redis.xadd(rt.keys.stream(0), {"s": payload})
    before = signature_count(db, petition.id)

    # When Ann is forgotten, then the queue drains
    erasures = Erasures(rt.redis, rt.keys, rt.settings.ip_hash_secret)
    forget(db, "annlee@googlemail.com", publish=rt.registry.set_counts, mark=erasures.mark)
    rt.drainer.process(rt.streams.read("c1", 10, 10))

    # Then her submission is stored as erased, never as a signature, and Bob's as usual
    stored = db.execute("SELECT receipt FROM signatures WHERE receipt IN ('ann-q', 'bob-q')").fetchall()
    assert stored == [("bob-q",)]
    reasons = db.execute("SELECT reason FROM rejected_signatures WHERE receipt = 'ann-q'").fetchall()
    assert reasons == [("erased",)]
    assert signature_count(db, petition.id) == before + 1
    # And the mark holds no address
    marks = b" ".join(rt.redis.zrange(rt.keys.erased, 0, -1))
    assert marks and b"ann" not in marks.lower() and b"gmail" not in marks


def test_forget_with_redis_lost_after_postgresql_says_what_it_did_and_a_second_run_finishes(
    make_petition: PetitionFactory,
    db: DB,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given Ann's signature in PostgreSQL and a dead letter of hers in a Redis of the test's own
    petition = make_petition()
    add_signatures(db, petition.id, 1, tag="ann")
    add_signatures(db, petition.id, 2, tag="other")
    server = PrivateRedis(appendfsync="always")  # what it acknowledged survives the kill
    server.start()
    try:
        own = settings.model_copy(update={"redis_url": server.url})
        for name, val in own.model_dump().items():
            monkeypatch.setenv(name.upper(), str(val))
        rt = Runtime(own)
        fields = SignatureFields("ann1@example.org", "Ann")
        payload = encode("ann-dl", petition.id, 1_790_000_000_000, None, fields)
        rt.streams.dead_letter(Entry(0, "1-0", payload, 5), "failed five times")
        rt.redis.close()

        # When Redis dies right after forget's PostgreSQL transaction committed
        real_forget = privacy.forget

        def forget_then_lose_redis(*args: Any, **kwargs: Any) -> Forgotten:
            done = real_forget(*args, **kwargs)
            server.kill()
            return done

        monkeypatch.setattr(privacy, "forget", forget_then_lose_redis)
        assert main(["forget", "ann1@example.org"]) == 1

        # Then it says what PostgreSQL did and to run it again, never "nothing changed", no address
        err = capsys.readouterr().err
        assert "erased 1 signatures" in err and "in PostgreSQL" in err and "again" in err
        assert "nothing changed" not in err and "ann1" not in err
        # And what PostgreSQL did stays done
        assert value(db, "SELECT count(*) FROM signatures WHERE receipt LIKE 'ann%%'") == 0
        assert signature_count(db, petition.id) == 3  # the starter and the two others

        # When Redis is back and the command runs again, it finishes: her dead letter goes
        monkeypatch.setattr(privacy, "forget", real_forget)
        server.start()
        assert main(["forget", "ann1@example.org"]) == 0
        assert "erased 0 signatures and 1 dead letters" in capsys.readouterr().out
        with redis.Redis.from_url(server.url) as r:
            assert r.xlen(Keys(own.key_prefix, own.shards).dead_letters) == 0
    finally:
        server.close()
