"""Fault 6: a poison entry (its payload is not what the entry schema says) fails every time.

It is left pending, taken over again after `CLAIM_IDLE_MS`, and after `MAX_DELIVERIES`
deliveries moved to the dead-letter stream with its error; the rest of its batch lands at once.
`sigingest deadletters list` shows it.
"""

from __future__ import annotations

import argparse

import pytest

from tests.conftest import PetitionFactory
from tests.faults.harness import (
    DB,
    Load,
    Worker,
    assert_invariant,
    fault_settings,
    intake,
    stored_receipts,
    wait_drained,
)
from tests.helpers import wait_for
from worker.ops.deadletters import DeadLetters, cmd_deadletters
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow

POISON = [b"\xff\xfenot json at all", b'{"r": "p1", "p": "12", "t": 1, "f": {}}', b"[1, 2, 3]"]


def test_poison_entries_are_dead_lettered_after_bounded_retries_and_their_batch_lands(
    settings: Settings,
    make_petition: PetitionFactory,
    rt: Runtime,
    db: DB,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = fault_settings(settings, max_deliveries=3)
    petition = make_petition()
    load = Load()
    rt.streams.ensure_groups()
    with intake(s) as client:
        # Given poison entries in the middle of good ones, on the same shard stream
        load.many(client, petition.id, 40)
        poison_ids = [str(rt.redis.xadd(rt.keys.stream(0), {"s": p}), "ascii") for p in POISON]  # type: ignore[arg-type]
        load.many(client, petition.id, 40)
    worker = Worker(s, "x", concurrency=2)
    try:
        # When the workers drain, the good entries land without waiting for the poison
        wait_for(lambda: len(stored_receipts(db)[0]) == len(load.receipts), timeout=40)
        assert DeadLetters(rt.redis, rt.keys).oldest() == [], "the poison is still being retried"
        wait_for(lambda: len(DeadLetters(rt.redis, rt.keys).oldest()) == len(POISON), timeout=40)
        wait_drained(db, rt, load.receipts)
    finally:
        logs = [worker.stop()]
    assert_invariant(db, rt, load.receipts, logs)
    # Then each poison entry was tried exactly MAX_DELIVERIES times and kept with its error
    letters = DeadLetters(rt.redis, rt.keys).oldest()
    assert sorted(d.entry_id for d in letters) == sorted(poison_ids)
    assert {d.deliveries for d in letters} == {s.max_deliveries}
    assert all(d.error and d.shard == 0 for d in letters)
    assert logs[0].count("left pending for retry") == len(POISON) * (s.max_deliveries - 1)
    # And the operator sees them
    assert cmd_deadletters(argparse.Namespace(action="list", count=100), s) == 0
    listed = capsys.readouterr().out
    assert f"{len(POISON)} dead letter(s)" in listed
    assert all(i in listed for i in poison_ids)
