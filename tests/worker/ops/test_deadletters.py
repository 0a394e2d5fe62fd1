"""`sigingest deadletters list|requeue`: find dead letters and put them back on their stream."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from tests.conftest import PetitionFactory
from tests.helpers import backlog
from worker.ops.cli import build_parser
from worker.ops.deadletters import DeadLetters
from worker.pipeline.entry import Entry, encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime
from worker.settings import Settings

DB = psycopg.Connection[tuple[object, ...]]


def run(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(["deadletters", *argv])
    return int(args.run(args, settings))


def dead_letter(rt: Runtime, shard: int, payload: bytes, error: str = "it broke") -> str:
    """Append to a shard, deliver it, and dead-letter it as the drainer does; returns its
    dead-letter id."""
    rt.streams.ensure_groups()
    rt.redis.xadd(rt.keys.stream(shard), {"s": payload})
    (entry,) = [e for e in rt.streams.read("c1", 100, 10) if e.shard == shard]
    rt.streams.dead_letter(Entry(entry.shard, entry.entry_id, entry.payload, 5), error)
    return DeadLetters(rt.redis, rt.keys).oldest()[-1].id


def payload(receipt: str, petition_id: int, email: str) -> bytes:
    return encode(receipt, petition_id, 1_790_000_000_000, None, SignatureFields(email, "Ann"))


def test_list_shows_each_dead_letter_with_its_error_and_never_its_payload(
    rt: Runtime, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = dead_letter(rt, 1, payload("r1", 1, "secret.person@example.org"), "payload is not JSON")
    assert run(settings, "list") == 0
    out = capsys.readouterr().out
    assert dead in out and "shard 1" in out and "5 deliveries" in out and "payload is not JSON" in out
    assert "secret.person" not in out
    assert "1 dead letter(s)" in out


def test_requeue_moves_a_dead_letter_back_to_its_shard_and_it_gets_stored(
    rt: Runtime,
    settings: Settings,
    make_petition: PetitionFactory,
    drain: Callable[[], int],
    db: DB,
    capsys: pytest.CaptureFixture[str],
) -> None:
    petition = make_petition()
    kept = dead_letter(rt, 2, payload("kept", petition.id, "kept@example.org"))
    moved = dead_letter(rt, 3, payload("moved", petition.id, "moved@example.org"))
    assert run(settings, "requeue", moved) == 0
    assert f"requeued {moved}" in capsys.readouterr().out
    assert [d.id for d in DeadLetters(rt.redis, rt.keys).oldest()] == [kept]
    assert backlog(rt)[0] == 1 and rt.redis.xlen(rt.keys.stream(3)) >= 1
    drain()
    stored = [r for (r,) in db.execute("SELECT receipt FROM signatures WHERE receipt = 'moved'")]
    assert stored == ["moved"]


def test_requeue_without_ids_moves_them_all(rt: Runtime, settings: Settings) -> None:
    for n in range(3):
        dead_letter(rt, n, payload(f"r{n}", 1, f"p{n}@example.org"))
    assert run(settings, "requeue") == 0
    assert DeadLetters(rt.redis, rt.keys).oldest() == []
    assert backlog(rt)[0] == 3


@pytest.mark.parametrize("bogus", ["1-1", "not-an-id", "99999999999999-0"])
def test_requeue_of_an_unknown_id_fails_and_changes_nothing(
    rt: Runtime, settings: Settings, bogus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = dead_letter(rt, 0, payload("r", 1, "a@example.org"))
    before = backlog(rt)
    assert run(settings, "requeue", bogus) == 1
    assert f"no dead letter {bogus}" in capsys.readouterr().out
    assert [d.id for d in DeadLetters(rt.redis, rt.keys).oldest()] == [dead]
    assert backlog(rt) == before
