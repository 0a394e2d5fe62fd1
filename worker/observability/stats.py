"""`sigingest stats`: the figures, gathered from Redis only (cheap enough to refresh every second).

Per shard: `queue_stats.shard_stats`. Totals: the running-totals hash (`accepted` counted by the
intake's append script, the rest by workers after each committed batch). Per petition: signatures
persisted in the last minute, from per-second buckets the workers write, and the live count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from worker.drain import durability
from worker.drain.durability import AckPolicy
from worker.drain.registry import card_from_hash
from worker.drain.streams import translated
from worker.keys import Keys
from worker.observability.queue_stats import ShardStats, dead_letters, shard_stats
from worker.observability.suspicious_report import SuspiciousReport, latest_report

WINDOW_SECONDS = 60
CONFIRM_TOTALS = ("pending", "confirmed", "refused_confirmations", "expired", "confirm_emails_owed")
TOP_PETITIONS = 10


@dataclass(frozen=True)
class PetitionActivity:
    id: int
    title: str
    signature_count: int
    last_minute: int


@dataclass
class Stats:
    shards: list[ShardStats]
    accepted: int = 0
    persisted: int = 0
    duplicates: int = 0
    uncounted: int = 0
    dead_lettered: int = 0
    dead_letters_waiting: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    # Email confirmation: stored pending, confirmed by a click, clicks refused, pending expired,
    # and emails owed (the last confirmations run's figure).
    pending: int = 0
    confirmed: int = 0
    refused_confirmations: int = 0
    expired: int = 0
    confirm_emails_owed: int = 0
    petitions: list[PetitionActivity] = field(default_factory=list)
    suspicious: SuspiciousReport | None = None  # the last hourly report (worker/integrity)
    durability: dict[str, Any] = field(default_factory=dict)  # ACK_DURABILITY and whether it holds

    def as_dict(self) -> dict[str, Any]:
        return {
            "shards": [s.as_dict() for s in self.shards],
            "totals": {
                "accepted": self.accepted,
                "persisted": self.persisted,
                "duplicates": self.duplicates,
                "uncounted": self.uncounted,
                "rejected": dict(sorted(self.rejected.items())),
                "dead_lettered": self.dead_lettered,
                "dead_letters_waiting": self.dead_letters_waiting,
                "pending": self.pending,
                "confirmed": self.confirmed,
                "refused_confirmations": self.refused_confirmations,
                "expired": self.expired,
                "confirm_emails_owed": self.confirm_emails_owed,
            },
            "petitions": [p.__dict__ for p in self.petitions],
            "suspicious": [asdict(f) for f in self.suspicious.findings] if self.suspicious else [],
            "durability": self.durability,
        }


def totals_from_hash(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """Pure: the running-totals hash as named figures, rejects grouped by reason."""
    flat = {k.decode(): int(v) for k, v in raw.items()}
    rejected = {k.split(":", 1)[1]: v for k, v in flat.items() if k.startswith("rejected:")}
    return {
        "accepted": flat.get("accepted", 0),
        "persisted": flat.get("persisted", 0),
        "duplicates": flat.get("duplicate", 0),
        "uncounted": flat.get("uncounted", 0),
        "dead_lettered": flat.get("dead_lettered", 0),
        "rejected": rejected,
        **{name: flat.get(name, 0) for name in CONFIRM_TOTALS},
    }


def top_recent(buckets: list[dict[bytes, bytes]], top: int = TOP_PETITIONS) -> list[tuple[int, int]]:
    """Pure: (petition id, signatures) summed over the buckets, most first, ties by id."""
    total: Counter[int] = Counter()
    for bucket in buckets:
        for petition, n in bucket.items():
            total[int(petition)] += int(n)
    return sorted(total.items(), key=lambda item: (-item[1], item[0]))[:top]


def gather(
    client: redis.Redis, keys: Keys, now: float, top: int = TOP_PETITIONS, ack: AckPolicy | None = None
) -> Stats:
    """Everything `sigingest stats` shows, as of `now` (epoch seconds). Raises `QueueUnavailable`."""
    stats = Stats(shard_stats(client, keys), dead_letters_waiting=dead_letters(client, keys))
    stats.durability = durability.current(client, ack or AckPolicy())
    stats.suspicious = latest_report(client, keys)
    second = int(now)
    with translated():
        with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.totals)
            for s in range(second - WINDOW_SECONDS + 1, second + 1):
                pipe.hgetall(keys.recent(s))
            totals, *buckets = pipe.execute()
        leaders = top_recent(buckets, top)
        with client.pipeline(transaction=False) as pipe:
            for petition_id, _ in leaders:
                pipe.hgetall(keys.petition(petition_id))
            cards = pipe.execute()
    for name, value in totals_from_hash(totals).items():
        setattr(stats, name, value)
    for (petition_id, recent), raw in zip(leaders, cards, strict=True):
        card = card_from_hash(petition_id, raw) if raw else None
        stats.petitions.append(
            PetitionActivity(
                petition_id, card.title if card else "?", card.signature_count if card else 0, recent
            )
        )
    return stats
