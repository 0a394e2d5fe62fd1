"""CPU per signature of the pure pipeline (`plan_batch`) alone: no Redis, no PostgreSQL.

`python -m bench.plan_cpu [N] [RUNS]`: builds N bench signatures as stream entries (the intake's
format, as `bench/drain.py` fills them), plans them in batches of the drain's default size with
one warmed `EmailChecker`, and prints µs per signature of each run and their median. Steadier
than `bench.drain_cpu` on a shared box, for before/after pairs of a change to worker/pipeline.
"""

from __future__ import annotations

import statistics
import sys
import time

from bench.data import signatures
from worker.pipeline.emails import EmailChecker
from worker.pipeline.entry import Entry, encode
from worker.pipeline.fields import SignatureFields
from worker.pipeline.plan import plan_batch
from worker.settings import Settings


def entries(n: int) -> list[Entry]:
    now = time.time_ns() // 1_000_000
    return [
        Entry(
            0,
            f"{now}-{i}",
            encode(f"b{i:09d}", sig.petition + 1, now, f"{i:032x}", SignatureFields(sig.email, sig.name)),
        )
        for i, sig in enumerate(signatures(n))
    ]


def one_run(batches: list[list[Entry]], emails: EmailChecker) -> float:
    """µs of thread CPU per signature to plan every batch once."""
    started = time.thread_time()
    for batch in batches:
        plan_batch(batch, emails)
    return (time.thread_time() - started) / sum(map(len, batches)) * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    size = Settings().batch_size
    all_entries = entries(n)
    batches = [all_entries[i : i + size] for i in range(0, n, size)]
    emails = EmailChecker()
    one_run(batches, emails)  # warms the per-domain caches, as a long-running drainer has them
    results = [one_run(batches, emails) for _ in range(runs)]
    print(
        f"plan µs/signature: median {statistics.median(results):.2f}   runs "
        + " ".join(f"{r:.2f}" for r in results)
    )


if __name__ == "__main__":
    main()
