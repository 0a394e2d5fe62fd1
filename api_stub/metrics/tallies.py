"""The intake's request figures as plain numbers, bumped on the event loop and turned into
Prometheus series only when `/metrics` is scraped (cheaper than prometheus-client objects per
request: bench/intake_metrics.py)."""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.observability.metrics import LATENCY_BUCKETS

log = logging.getLogger("sigingest.intake")


class RouteTally:
    """Running figures of one (route, status). No locks: one event loop writes, and a scrape that
    reads a half-updated tally is off by one request for one scrape."""

    __slots__ = ("buckets", "bytes_in", "bytes_out", "requests", "seconds")

    def __init__(self) -> None:
        self.requests = 0
        self.seconds = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # last one: +Inf

    def add(self, other: RouteTally) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


@dataclass
class Tallies:
    """One intake process's figures: per (route, status), and failed Redis calls."""

    routes: dict[tuple[str, int], RouteTally] = field(default_factory=dict)
    redis_errors: int = 0

    def count_redis_error(self) -> None:
        self.redis_errors += 1

    def record(self, method: str, route: str, status: int, elapsed: float, received: int, sent: int) -> None:
        """One answered request; shared by the metrics middleware and the signing route's fast
        path (api_stub/intake/fast.py), so both count alike. Logged only at DEBUG, without a body."""
        tally = self.routes.get((route, status))
        if tally is None:
            tally = self.routes[(route, status)] = RouteTally()
        tally.requests += 1
        tally.seconds += elapsed
        tally.buckets[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
        tally.bytes_in += received
        tally.bytes_out += sent
        if log.isEnabledFor(logging.DEBUG):
            data = {"method": method, "route": route, "status": status, "bytes_in": received}
            data |= {"bytes_out": sent, "seconds": round(elapsed, 6)}
            log.debug("request", extra={"data": data})


def summed(parts: Iterable[Tallies]) -> Tallies:
    """The figures of several processes added up."""
    total = Tallies()
    for part in parts:
        total.redis_errors += part.redis_errors
        for key, tally in list(part.routes.items()):
            total.routes.setdefault(key, RouteTally()).add(tally)
    return total
