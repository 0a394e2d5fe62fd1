"""What the queue looks like right now, read from Redis: per shard and the dead letters.

Any process can compute it (intake, worker host, `sigingest stats`), so it is exported by a
custom collector at scrape time rather than counted. Ages come from entry ids (Redis stamps each
`XADD` with its own clock in ms) compared with Redis's `TIME`, so no host clock is involved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.drain.streams import translated
from worker.errors import QueueUnavailable
from worker.keys import CONSUMER_GROUP, Keys
from worker.observability import metrics as m
from worker.observability.suspicious_report import SuspiciousReport, latest_report


@dataclass(frozen=True, slots=True)
class ShardStats:
    shard: int
    length: int  # XLEN
    pending: int  # delivered, not acknowledged
    undelivered: int  # not yet delivered to any consumer
    consumers: int
    oldest_pending_age_seconds: float  # 0 when nothing is pending
    lag_seconds: float  # age of the oldest unacknowledged entry; 0 when none

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def queued_entries(client: redis.Redis, keys: Keys) -> int:
    """Entries in the shard streams, which is what the drainers still have to do (acknowledged
    entries are trimmed as they are acknowledged). One pipelined round trip."""
    with translated():
        pipe = client.pipeline(transaction=False)
        for stream in keys.streams():
            pipe.xlen(stream)
        return sum(int(n) for n in pipe.execute())


def id_ms(entry_id: str) -> int:
    """The millisecond timestamp in a stream entry id (`<ms>-<seq>`)."""
    return int(entry_id.split("-", 1)[0])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def shard_stats(client: redis.Redis, keys: Keys, group: str = CONSUMER_GROUP) -> list[ShardStats]:
    """Every shard's figures. Raises `QueueUnavailable` when Redis does not answer."""
    with translated():
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        return [_one_shard(client, keys.stream(shard), shard, group, now_ms) for shard in range(keys.shards)]


def _one_shard(client: redis.Redis, stream: str, shard: int, group: str, now_ms: int) -> ShardStats:
    if not client.exists(stream):
        return ShardStats(shard, 0, 0, 0, 0, 0.0, 0.0)
    length = int(client.xlen(stream))
    info: Any = next((g for g in client.xinfo_groups(stream) if _text(g["name"]) == group), None)
    if info is None:  # no worker has started yet: everything is undelivered
        first: Any = client.xrange(stream, count=1)
        age = (now_ms - id_ms(_text(first[0][0]))) / 1000 if first else 0.0
        return ShardStats(shard, length, 0, length, 0, 0.0, max(0.0, age))
    pending = int(info["pending"])
    oldest_ms: list[int] = []
    pending_age = 0.0
    if pending:
        summary: Any = client.xpending(stream, group)
        oldest_ms.append(id_ms(_text(summary["min"])))
        pending_age = max(0.0, (now_ms - oldest_ms[0]) / 1000)
    last = _text(info["last-delivered-id"])
    after: Any = client.xrange(stream, min=f"({last}", count=1)
    undelivered = _undelivered(client, stream, info, last)
    if after:
        oldest_ms.append(id_ms(_text(after[0][0])))
    lag = max(0.0, (now_ms - min(oldest_ms)) / 1000) if oldest_ms else 0.0
    return ShardStats(shard, length, pending, undelivered, int(info["consumers"]), pending_age, lag)


def _undelivered(client: redis.Redis, stream: str, info: Any, last: str) -> int:
    """Redis >= 7 reports it (`lag`). Older servers get the entries not pending: acknowledged
    entries are trimmed, so that is the undelivered ones give or take a batch being trimmed;
    never a count over the backlog, which would cost a scrape O(backlog)."""
    lag = info.get("lag")
    if lag is not None:
        return int(lag)
    return max(0, int(client.xlen(stream)) - int(info["pending"]))


def confirm_emails_owed(client: redis.Redis, keys: Keys) -> int:
    """The unsent confirmation-email backlog the last confirmations run wrote to the totals."""
    with translated():
        raw: Any = client.hget(keys.totals, "confirm_emails_owed")
    return int(raw or 0)


def dead_letters(client: redis.Redis, keys: Keys) -> int:
    with translated():
        return int(client.xlen(keys.dead_letters))


def suspicious_family(report: SuspiciousReport | None) -> GaugeMetricFamily:
    """Petitions flagged by the last hourly report, by kind; zeros before the first report."""
    family = GaugeMetricFamily(m.SUSPICIOUS_PETITIONS, "petitions with a suspicious share", labels=["kind"])
    findings = report.findings if report else []
    for kind in ("ip", "domain"):
        family.add_metric([kind], float(len({f.petition_id for f in findings if f.kind == kind})))
    return family


class QueueCollector(Collector):
    """Exports `shard_stats` and the dead-letter count; `sigingest_queue_up` 0 when Redis cannot
    be read (the other series are then absent rather than stale).

    Read from Redis at most once per `cache_seconds` whatever the scrape rate (a few cheap calls
    per shard): concurrent scrapes wait for one reading and share it, so a storm of scrapes
    cannot become a storm of Redis calls."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        cache_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._cache_seconds, self._clock = cache_seconds, clock
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._families: list[GaugeMetricFamily] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._clock() - self._read_at >= self._cache_seconds:
                self._families = list(self._read())
                self._read_at = self._clock()
            return iter(self._families)

    def _read(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(m.QUEUE_UP, "1 when Redis could be read at this scrape")
        try:
            shards = shard_stats(self._redis, self._keys)
            dead = dead_letters(self._redis, self._keys)
            owed = confirm_emails_owed(self._redis, self._keys)
        except QueueUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        families: list[tuple[str, str, Callable[[ShardStats], float]]] = [
            (m.QUEUE_STREAM_LENGTH, "entries in the shard stream", lambda s: s.length),
            (m.QUEUE_PENDING, "delivered, unacknowledged entries", lambda s: s.pending),
            (m.QUEUE_UNDELIVERED, "entries not yet delivered", lambda s: s.undelivered),
            (m.QUEUE_CONSUMERS, "consumers in the group", lambda s: s.consumers),
            (
                m.QUEUE_OLDEST_PENDING_AGE,
                "age of the oldest pending entry",
                lambda s: s.oldest_pending_age_seconds,
            ),
            (m.QUEUE_LAG, "age of the oldest unacknowledged entry", lambda s: s.lag_seconds),
        ]
        for name, help_text, value in families:
            family = GaugeMetricFamily(name, help_text, labels=["shard"])
            for s in shards:
                family.add_metric([str(s.shard)], float(value(s)))
            yield family
        yield GaugeMetricFamily(m.QUEUE_DEAD_LETTERS, "entries in the dead-letter stream", value=dead)
        yield GaugeMetricFamily(
            m.CONFIRM_EMAILS_OWED, "confirmation emails owed (last confirmations run)", value=owed
        )
        yield suspicious_family(latest_report(self._redis, self._keys))
