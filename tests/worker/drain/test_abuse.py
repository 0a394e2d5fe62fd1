"""Abuse limits against real Redis and PostgreSQL: the windows, redelivery, and the full path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import psycopg
import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.helpers import BEHIND_PROXY, PROXY, drain_everything, read_invariant
from worker.drain.abuse import AbuseGuard, policy_from_settings
from worker.errors import RetryLater
from worker.keys import Keys
from worker.pipeline.abuse import AbusePolicy, RateLimit
from worker.pipeline.entry import Entry, encode
from worker.pipeline.fields import SignatureFields
from worker.pipeline.plan import Row
from worker.runtime import Runtime
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]
T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
SUSTAINED_ONLY = AbusePolicy(burst=RateLimit(0, 60), sustained=RateLimit(5, 300))


def row(receipt: str, seconds: float, ip: str = "a1", petition: int = 1) -> Row:
    email = f"{receipt}@example.org"
    at = T0 + timedelta(seconds=seconds)
    return Row(receipt, petition, email, email, "Ann", None, None, False, ip, at)


def judged(guard: AbuseGuard, rows: list[Row]) -> dict[str, str]:
    return {r.receipt: r.state for r in guard(rows)}


@pytest.fixture
def abuse_rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings.model_copy(update={"abuse_checks": True}))
    yield runtime
    runtime.drainer.store.close()
    runtime.engine.dispose()
    runtime.redis.close()


def test_the_fifth_signature_in_300_seconds_passes_and_the_sixth_is_fraudulent(rt: Runtime) -> None:
    guard = AbuseGuard(rt.redis, rt.keys, SUSTAINED_ONLY)
    five = [row(f"s{n}", 10 * n) for n in range(5)]  # t = 0, 10, 20, 30, 40
    assert set(judged(guard, five).values()) == {"validated"}
    assert judged(guard, [row("sixth", 299.999)]) == {"sixth": "fraudulent"}
    # t = 310: the window (10, 310] holds s2..s4 and the sixth attempt: 4, so it passes again.
    assert judged(guard, [row("later", 310)]) == {"later": "validated"}
    # Other IPs and other petitions have windows of their own.
    assert judged(guard, [row("other-ip", 45, ip="b2"), row("other-petition", 45, petition=2)]) == {
        "other-ip": "validated",
        "other-petition": "validated",
    }


def test_the_default_burst_allows_one_per_60_seconds(rt: Runtime, settings: Settings) -> None:
    guard = AbuseGuard(rt.redis, rt.keys, policy_from_settings(settings))
    assert judged(guard, [row("a", 0), row("b", 59.999)]) == {"a": "validated", "b": "fraudulent"}
    # Over-limit attempts take a place in the window: 60 s after the first is still within 60 s of b.
    assert judged(guard, [row("c", 60)]) == {"c": "fraudulent"}
    assert judged(guard, [row("d", 120)]) == {"d": "validated"}


def test_a_batch_is_judged_by_accepted_time_not_by_arrival_order(rt: Runtime) -> None:
    forward = [row(f"s{n}", 10 * n) for n in range(7)]
    guard = AbuseGuard(rt.redis, rt.keys, SUSTAINED_ONLY)
    first = judged(guard, forward)
    other = AbuseGuard(rt.redis, Keys(rt.keys.prefix + "other:", rt.keys.shards), SUSTAINED_ONLY)
    assert judged(other, list(reversed(forward))) == first
    assert [first[f"s{n}"] for n in range(7)] == ["validated"] * 5 + ["fraudulent"] * 2


def test_judging_the_same_rows_again_gives_the_same_outcome(rt: Runtime) -> None:
    guard = AbuseGuard(rt.redis, rt.keys, SUSTAINED_ONLY)
    rows = [row(f"s{n}", n) for n in range(6)]
    first = judged(guard, rows)
    assert judged(guard, rows) == first  # a redelivered batch: receipts are not added twice
    assert judged(guard, rows[4:]) == {"s4": "validated", "s5": "fraudulent"}


def test_a_one_signature_window_counts_like_any_other_when_it_is_seen_again(rt: Runtime) -> None:
    # Given a window holding one signature (kept as a string, the usual case)
    guard = AbuseGuard(rt.redis, rt.keys, AbusePolicy(burst=RateLimit(1, 60), sustained=RateLimit(5, 300)))
    assert judged(guard, [row("first", 0)]) == {"first": "validated"}
    assert judged(guard, [row("first", 0)]) == {"first": "validated"}  # redelivered: still alone
    # When later and earlier signatures from the same IP arrive, one at a time or together
    assert judged(guard, [row("second", 30)]) == {"second": "fraudulent"}
    assert judged(guard, [row("earlier", -100), row("much-later", 400)]) == {
        "earlier": "validated",
        "much-later": "validated",
    }
    # Then every one of them is in the window, each once
    window = rt.keys.abuse_window(1, "a1")
    assert rt.redis.zrange(window, 0, -1) == [b"earlier", b"first", b"second", b"much-later"]
    assert 0 < rt.redis.ttl(window) <= 2 * 300 + 3600


def abuse_keys(rt: Runtime, petition: int) -> list[bytes]:
    return list(rt.redis.scan_iter(f"{rt.keys.prefix}abuse:{petition}:*", count=1000))


def test_made_up_addresses_keep_at_most_the_cap_of_windows_per_petition(rt: Runtime) -> None:
    # Given a cap of 50 windows per petition
    guard = AbuseGuard(rt.redis, rt.keys, SUSTAINED_ONLY, windows_per_petition=50)
    # When 1,000 signatures from 1,000 distinct hashed IPs arrive, in batches of all shapes
    rows = [row(f"s{n}", n / 10, ip=f"{n:08x}") for n in range(1000)]
    for start in range(0, 1000, 100):
        again = row(f"twice{start}", start / 10 + 0.05, ip=f"{start:08x}")  # one window gets two
        judged(guard, [*rows[start : start + 100], again])
    # Then the petition holds at most 50 windows and its index, and the index names exactly them
    windows = {k.decode() for k in abuse_keys(rt, 1)} - {rt.keys.abuse_index(1)}
    assert len(windows) <= 50
    index = {m.decode() for m in rt.redis.zrange(rt.keys.abuse_index(1), 0, -1)}
    assert index == windows
    # And the windows kept are the most recently used: the newest IP still counts
    assert judged(guard, [row("again", 99.95, ip=f"{999:08x}")]) == {"again": "validated"}
    assert rt.redis.zcard(rt.keys.abuse_window(1, f"{999:08x}")) == 2
    # And another petition keeps its own windows, untouched by the first's evictions
    assert judged(guard, [row("elsewhere", 0, ip="0000abcd", petition=2)]) == {"elsewhere": "validated"}
    assert [k.decode().rpartition(":")[2] for k in abuse_keys(rt, 2)].count("0000abcd") == 1


def test_with_no_evictions_the_windows_count_as_before(rt: Runtime) -> None:
    guard = AbuseGuard(rt.redis, rt.keys, SUSTAINED_ONLY, windows_per_petition=3)
    outcome = judged(guard, [row(f"s{n}", 10 * n, ip=["a1", "b2", "c3"][n % 3]) for n in range(18)])
    assert [outcome[f"s{n}"] for n in range(18)] == ["validated"] * 15 + ["fraudulent"] * 3
    assert len(abuse_keys(rt, 1)) == 4  # three windows and the index


def entries_from(ip: str, petition: int, count: int, start_ms: int, step_ms: int) -> list[bytes]:
    return [
        encode(f"e{n}", petition, start_ms + n * step_ms, ip, SignatureFields(f"p{n}@example.org", "P"))
        for n in range(count)
    ]


def read_entries(rt: Runtime, payloads: list[bytes]) -> list[Entry]:
    rt.streams.ensure_groups()
    for p in payloads:
        rt.redis.xadd(rt.keys.stream(0), {"s": p})
    return rt.streams.read("c1", 100, 10)


def test_a_redelivered_batch_keeps_its_outcome_after_a_failed_commit(
    abuse_rt: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    petition = make_petition()
    # Three signatures from one IP, 1 s apart: the first passes, the other two are over the burst.
    entries = read_entries(abuse_rt, entries_from("c0ffee", petition.id, 3, 1_790_000_000_000, 1000))
    failing = mock.patch.object(abuse_rt.drainer.store, "write", side_effect=RetryLater("forced"))
    with failing, pytest.raises(RetryLater):
        abuse_rt.drainer.process(entries)  # windows updated, nothing committed
    abuse_rt.drainer.process(entries)  # the retry (as after a crash before XACK)
    abuse_rt.drainer.process(entries)  # and a redelivery after the commit
    states = dict(db.execute("SELECT receipt, state FROM signatures WHERE receipt LIKE 'e%%'").fetchall())
    assert states == {"e0": "validated", "e1": "fraudulent", "e2": "fraudulent"}
    assert db.execute("SELECT signature_count FROM petitions WHERE id = %s", [petition.id]).fetchone() == (2,)
    assert read_invariant(db).counts_match


@pytest.fixture
def client(abuse_rt: Runtime) -> Iterator[TestClient]:
    app_settings = abuse_rt.settings.model_copy(update=BEHIND_PROXY)
    with TestClient(create_app(app_settings), client=(PROXY, 50000)) as client:
        yield client


def sign(client: TestClient, petition_id: int, email: str, ip: str) -> None:
    response = client.post(
        f"/petitions/{petition_id}/signatures",
        json={"email": email, "name": "Ann"},
        headers={"x-forwarded-for": ip},
    )
    assert response.status_code == 202, response.text  # no signal to a script


def test_over_limit_submissions_are_accepted_stored_fraudulent_and_not_counted(
    abuse_rt: Runtime,
    client: TestClient,
    make_petition: PetitionFactory,
    db: DB,
    caplog: pytest.LogCaptureFixture,
) -> None:
    petition = make_petition()
    for n in range(4):
        sign(client, petition.id, f"script{n}@example.org", "203.0.113.9")
    sign(client, petition.id, "someone@example.org", "203.0.113.10")
    with caplog.at_level(logging.DEBUG):
        drain_everything(abuse_rt)
    assert "3 of 5 signatures in the batch marked fraudulent" in caplog.text
    assert "@" not in caplog.text and "203.0.113" not in caplog.text
    by_state = dict(
        db.execute(
            "SELECT state, count(*) FROM signatures WHERE petition_id = %s GROUP BY state", [petition.id]
        ).fetchall()
    )
    assert by_state == {"validated": 3, "fraudulent": 3}  # starter, first script, someone
    assert client.get(f"/petitions/{petition.id}").json()["signature_count"] == 3
    assert read_invariant(db).counts_match


def test_allow_lists_given_as_raw_ips_and_domains_apply_to_hashed_entries(
    settings: Settings, make_petition: PetitionFactory, db: DB
) -> None:
    allowing = settings.model_copy(
        update={
            "abuse_checks": True,
            "allowed_ips": "198.51.100.0/24",
            "allowed_domains": "newsroom.example",
            "blocked_domains": "spam.example",
            **BEHIND_PROXY,
        }
    )
    runtime = Runtime(allowing)
    petition = make_petition()
    try:
        with TestClient(create_app(allowing), client=(PROXY, 50000)) as client:
            for n in range(6):
                sign(client, petition.id, f"student{n}@example.org", "198.51.100.77")  # a university
                sign(client, petition.id, f"reporter{n}@desk.newsroom.example", "192.0.2.1")
            sign(client, petition.id, "bot@spam.example", "198.51.100.78")
        drain_everything(runtime)
    finally:
        runtime.drainer.store.close()
        runtime.engine.dispose()
        runtime.redis.close()
    fraud = db.execute("SELECT email FROM signatures WHERE state = 'fraudulent'").fetchall()
    assert fraud == [("bot@spam.example",)]
    assert db.execute("SELECT signature_count FROM petitions").fetchone() == (13,)


def reference(rows: list[Row], policy: AbusePolicy) -> dict[str, str]:
    """The rule written plainly: count earlier attempts (by time, then receipt) in each window."""
    ordered = sorted(rows, key=lambda r: (r.accepted_at, r.receipt))
    states = {}
    for n, r in enumerate(ordered):
        earlier = ordered[:n]
        burst = sum(e.accepted_at > r.accepted_at - timedelta(seconds=policy.burst.seconds) for e in earlier)
        sustained = sum(
            e.accepted_at > r.accepted_at - timedelta(seconds=policy.sustained.seconds) for e in earlier
        )
        over = (policy.burst.limit and burst >= policy.burst.limit) or (
            policy.sustained.limit and sustained >= policy.sustained.limit
        )
        states[r.receipt] = "fraudulent" if over else "validated"
    return states


@pytest.mark.parametrize("batch", [1, 4, 16, 40])
def test_any_batching_of_entries_gives_the_outcome_of_the_plain_rule(rt: Runtime, batch: int) -> None:
    policy = AbusePolicy(burst=RateLimit(2, 60), sustained=RateLimit(5, 300))
    # 40 attempts from one IP at irregular times, some in the same millisecond.
    rows = sorted(
        (row(f"r{n:02d}", (n * 37) % 400 + (n % 3) * 0.0005) for n in range(40)), key=lambda r: r.accepted_at
    )
    guard = AbuseGuard(rt.redis, rt.keys, policy)
    got: dict[str, str] = {}
    for start in range(0, len(rows), batch):
        got |= judged(guard, list(reversed(rows[start : start + batch])))  # order inside a batch is free
    assert got == reference(rows, policy)
    assert set(got.values()) == {"validated", "fraudulent"}


@pytest.mark.parametrize(
    "hashes",
    [["ab12", "ff", "0" * 64], ["ab12", "a\nb"], ["ab12", ""], ["ZZ"], ["0" * 65], ["ab12", "ab12\n"]],
)
def test_the_keys_of_a_batch_of_windows_are_those_of_each_window(hashes: list[str]) -> None:
    keys = Keys("t:", 4)
    windows = [(n + 1, h) for n, h in enumerate(hashes)]
    assert keys.abuse_windows(windows) == [keys.abuse_window(p, h) for p, h in windows]
