"""Under a light load the drain waits `LINGER_MS` between small batches, so signatures arriving
one by one are written in fewer, larger batches; a full batch, a shard that gave its full share
or an idle spell does not wait."""

from __future__ import annotations

from dataclasses import replace
from itertools import count

import psycopg

from tests.conftest import PetitionFactory
from tests.helpers import Clock
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime

DB = psycopg.Connection[tuple[object, ...]]
receipts = count(1)


def arrive(rt: Runtime, petition_id: int, n: int, shard: int | None = None) -> None:
    """`n` signatures, round the shards or all on one."""
    for _ in range(n):
        i = next(receipts)
        payload = encode(
            f"r{i}", petition_id, 1_790_000_000_000, None, SignatureFields(f"p{i}@example.org", "P")
        )
        rt.redis.xadd(rt.keys.stream(i % rt.keys.shards if shard is None else shard), {"s": payload})


def test_a_small_batch_makes_the_next_read_wait_and_a_full_or_empty_one_does_not(
    rt: Runtime, make_petition: PetitionFactory, db: DB
) -> None:
    petition = make_petition()
    clock = Clock()
    drainer = rt.drainer
    drainer._clock, drainer._sleep = clock, clock.sleep
    drainer.config = replace(drainer.config, batch_size=5, linger_ms=50)
    rt.streams.ensure_groups()

    # A first signature after an idle spell is read at once
    arrive(rt, petition.id, 3)
    assert drainer.step() == 3 and clock.sleeps == []

    # The next read waits out the linger from the start of the small read before it
    arrive(rt, petition.id, 2)
    assert drainer.step() == 2
    assert len(clock.sleeps) == 1 and 0.04 < clock.sleeps[0] < 0.05

    # A full batch is read after the wait its small predecessor asks for, and asks for none
    arrive(rt, petition.id, 5)
    assert drainer.step() == 5 and len(clock.sleeps) == 2
    arrive(rt, petition.id, 1)
    assert drainer.step() == 1 and len(clock.sleeps) == 2

    # An empty read (the blocking read timed out: idle) does not make the next one wait
    assert drainer.step() == 0 and len(clock.sleeps) == 3  # it waited: the read before was small
    arrive(rt, petition.id, 1)
    assert drainer.step() == 1 and len(clock.sleeps) == 3

    # A read where one shard gave its full share (here 2 of a batch of 5 over 4 shards) may have
    # left more behind on that shard: the next read does not wait, though the batch was small
    arrive(rt, petition.id, 3, shard=0)
    assert drainer.step() == 2 and len(clock.sleeps) == 4  # waited: the read before was light
    assert drainer.step() == 1 and len(clock.sleeps) == 4

    stored = db.execute("SELECT count(*) FROM signatures WHERE receipt LIKE 'r%%'").fetchone()
    assert stored == (15,)
