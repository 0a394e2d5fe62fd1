"""`celery worker --autoscale=MAX,MIN`: the pool grows to MAX while a backlog waits, drains every
entry exactly once, and shrinks back to MIN when the backlog is gone (extra drainers end)."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import pytest

from tests.conftest import PetitionFactory
from tests.helpers import Child, backlog, read_invariant, settings_env, stop_process, wait_for
from worker.pipeline.entry import encode
from worker.pipeline.fields import SignatureFields
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.slow
QUEUED = 6000


def pool_size(worker: subprocess.Popen[bytes]) -> int:
    """The worker's prefork children."""
    children = subprocess.run(["ps", "--ppid", str(worker.pid), "-o", "pid="], capture_output=True, text=True)
    return len(children.stdout.split())


def test_autoscale_grows_for_a_backlog_and_shrinks_after_it(
    settings: Settings,
    make_petition: PetitionFactory,
    rt: Runtime,
    db: psycopg.Connection[tuple[object, ...]],
) -> None:
    petition = make_petition()
    now = time.time_ns() // 1_000_000
    with rt.redis.pipeline(transaction=False) as pipe:
        for n in range(QUEUED):
            email = f"auto{n}@example.org"
            entry = encode(f"a{n:06d}", petition.id, now, f"{n:032x}", SignatureFields(email, "A"))
            pipe.xadd(rt.keys.stream(rt.keys.shard_for_email(email)), {"s": entry})
        pipe.execute()
    # Small batches keep the backlog above AUTOSCALE_BACKLOG long enough to be seen.
    config = settings.model_copy(
        update={"batch_size": 20, "autoscale_backlog": 500, "drain_slice_seconds": 1.0}
    )
    worker = Child(
        [
            *(sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "ingest", "--autoscale=3,1"),
            *("-n", f"auto{now}@%h", "--without-mingle", "--without-gossip", "--loglevel", "INFO"),
        ],
        # Celery's autoscaler waits AUTOSCALE_KEEPALIVE seconds (30 by default) before shrinking.
        env=settings_env(config, AUTOSCALE_KEEPALIVE="2", WORKER_METRICS_PORT="0"),
        start_new_session=True,
    )
    try:
        sizes: list[int] = []

        def drained() -> bool:
            sizes.append(pool_size(worker))
            return backlog(rt) == (0, 0)

        wait_for(drained, timeout=180, interval=0.2)
        assert max(sizes) == 3, f"the pool should grow to MAX while the backlog waits: {sizes}"
        wait_for(lambda: pool_size(worker) == 1, timeout=60, interval=0.5)  # extras ended
        # ... and stays at MIN while nothing is queued (the one base drainer keeps polling).
        time.sleep(6)
        assert pool_size(worker) == 1
    finally:
        output = stop_process(worker)
    assert worker.returncode == 0, output[-3000:]
    assert "extra drainer slot" in output and "started 2 extra drainers" in output, output[-3000:]
    invariant = read_invariant(db)
    assert invariant.signatures == QUEUED and invariant.counts_match and invariant.duplicate_receipts == 0


def test_a_slot_handing_over_to_its_successor_counts_once() -> None:
    from types import SimpleNamespace

    from worker.scheduling.autoscale import demand

    def request(name: str, *args: object) -> SimpleNamespace:
        return SimpleNamespace(task_name=name, args=list(args))

    handing_over = [request("ingest.drain", 0), request("ingest.drain", 0, False)]
    assert demand(handing_over) == 1
    assert demand([*handing_over, request("ingest.drain", 1, True), request("reminders.send_due")]) == 3
    assert demand([]) == 0
