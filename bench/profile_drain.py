"""Profile one process draining N signatures in-process (cProfile), to find the wall.

`python -m bench.profile_drain [N]`: prints the top functions by cumulative and own time.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

from bench.data import signatures
from bench.drain import fill
from bench.env import BenchEnv, backlog


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    env = BenchEnv("postgresql://postgres@127.0.0.1:5432/postgres", "redis://127.0.0.1:6379/0")
    try:
        env.prepare()
        _, rt = env.fresh("profile")
        fill(rt, env.petition_ids, signatures(n, tag="profile"))
        drainer = rt.drainer
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        while sum(backlog(rt)):
            drainer.step()
        profile.disable()
        print(f"{n / (time.perf_counter() - started):,.0f} signatures/s in one process (under cProfile)")
        stats = pstats.Stats(profile).strip_dirs()
        stats.sort_stats("tottime").print_stats(18)
        stats.sort_stats("cumulative").print_stats(
            "drain.py|plan.py|store.py|streams.py|registry.py|fields.py|entry.py|emails.py", 25
        )
        rt.drainer.store.close()
        rt.engine.dispose()
    finally:
        env.cleanup()


if __name__ == "__main__":
    main()
