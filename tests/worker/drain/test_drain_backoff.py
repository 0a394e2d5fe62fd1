"""The drain loop's backoff while PostgreSQL is unreachable outlives a drain slice."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.faults.harness import free_port
from tests.helpers import Clock
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime
from worker.settings import Settings


@pytest.fixture
def refused(settings: Settings) -> Iterator[Runtime]:
    """A runtime whose PostgreSQL refuses connections (nothing listens on its port)."""
    rt = Runtime(settings.model_copy(update={"database_url": f"postgresql://127.0.0.1:{free_port()}/x"}))
    yield rt
    rt.redis.close()


def test_the_backoff_keeps_growing_across_slices_up_to_its_maximum(
    refused: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    rt = refused
    clock = Clock()
    drainer = rt.drainer
    drainer._clock, drainer._sleep = clock, clock.sleep
    drainer.config = replace(drainer.config, retry_max_seconds=8.0)
    rt.streams.ensure_groups()
    payload = encode("r1", 1, 1_790_000_000_000, None, SignatureFields("a@example.org", "A"))
    rt.redis.xadd(rt.keys.stream(0), {"s": payload})
    caplog.set_level(logging.WARNING, "sigingest.drain")
    for _ in range(12):  # twelve 2-second drain slices: 24 s of outage
        drainer.run_until(clock() + 2.0)
    pauses = [r.args[0] for r in caplog.records if r.msg.startswith("backing off")]  # type: ignore[index]
    # Pauses ~0.5, 1, 2, 4, then 8 s (jittered down to half): 7 or 8 attempts in 24 s. A backoff
    # that starts again with every slice would try ~3 times per slice, over 30 times.
    assert pauses[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(pauses) <= 10
    assert set(pauses[4:]) == {8.0}
    assert clock.now >= 24.0
