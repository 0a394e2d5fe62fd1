"""The petition registry in Redis: what the intake checks and serves, kept in step with PostgreSQL.

Written on petition create, close and victory, in full at worker start, and after every batch
(the live count). The intake reads it; it never reads PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from worker.drain.streams import lua, translated
from worker.keys import Keys


@dataclass(frozen=True, slots=True)
class PetitionCard:
    """What the intake needs to know about a petition."""

    id: int
    title: str
    starter_name: str
    status: str
    signature_count: int
    slug: str = ""
    # Email-confirmation mode: signatures wait `pending` until their signer follows the link.
    confirm_email: bool = False
    body: str = ""  # the petition's own words, shown on its page
    target: str = ""  # the decision maker
    awaiting_confirmation: int = 0  # pending signatures (published by the drain, approximate)

    def as_hash(self) -> dict[Any, Any]:
        """Everything but `awaiting_confirmation`, which the drain keeps by increments."""
        return {
            "title": self.title,
            "starter": self.starter_name,
            "status": self.status,
            "count": self.signature_count,
            "slug": self.slug,
            "confirm": "1" if self.confirm_email else "0",
            "body": self.body,
            "target": self.target,
        }


class Registry:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._raise_count = client.register_script(lua("raise_count"))

    def publish(self, cards: Iterable[PetitionCard]) -> None:
        """Write petitions to the registry, replacing their status and count."""
        with translated(), self._redis.pipeline(transaction=False) as pipe:
            for card in cards:
                pipe.hset(self._keys.petition(card.id), mapping=card.as_hash())
                pipe.sadd(self._keys.registry_index, card.id)
            pipe.execute()

    def raise_counts(self, counts: Mapping[int, int]) -> None:
        """Publish committed counts after a batch, never moving a count backwards."""
        if not counts:
            return
        with translated(), self._redis.pipeline(transaction=False) as pipe:
            for petition_id, count in counts.items():
                self._raise_count(keys=[self._keys.petition(petition_id)], args=[count], client=pipe)
            pipe.execute()

    def set_counts(self, counts: Mapping[int, int]) -> None:
        """Publish committed counts as they are, lower ones included: for operator actions
        (invalidate, forget, reconcile) that take signatures away, which `raise_counts` cannot."""
        if not counts:
            return
        with translated(), self._redis.pipeline(transaction=False) as pipe:
            for petition_id, count in counts.items():
                pipe.hset(self._keys.petition(petition_id), "count", count)
            pipe.execute()

    def set_awaiting(self, awaiting: Mapping[int, int]) -> None:
        """Publish each petition's count of pending signatures (read after a commit)."""
        if not awaiting:
            return
        with translated(), self._redis.pipeline(transaction=False) as pipe:
            for petition_id, n in awaiting.items():
                pipe.hset(self._keys.petition(petition_id), "awaiting", n)
            pipe.execute()

    def add_totals(self, increments: Mapping[str, int], gauges: Mapping[str, int] | None = None) -> None:
        """Add to the running totals `sigingest stats` shows (zeros skipped); set `gauges` as they are."""
        with translated(), self._redis.pipeline(transaction=False) as pipe:
            for name, n in increments.items():
                if n:
                    pipe.hincrby(self._keys.totals, name, n)
            for name, value in (gauges or {}).items():
                pipe.hset(self._keys.totals, name, value)
            pipe.execute()

    def get(self, petition_id: int) -> PetitionCard | None:
        with translated():
            data: Any = self._redis.hgetall(self._keys.petition(petition_id))
        return card_from_hash(petition_id, data) if data else None


def card_from_hash(petition_id: int, data: Mapping[bytes, bytes]) -> PetitionCard | None:
    """A registry hash as a card; None when the hash lacks a status (not a petition)."""
    if b"status" not in data:
        return None
    return PetitionCard(
        id=petition_id,
        title=data.get(b"title", b"").decode(),
        starter_name=data.get(b"starter", b"").decode(),
        status=data[b"status"].decode(),
        signature_count=int(data.get(b"count", b"0")),
        slug=data.get(b"slug", b"").decode(),
        confirm_email=data.get(b"confirm") == b"1",
        body=data.get(b"body", b"").decode(),
        target=data.get(b"target", b"").decode(),
        awaiting_confirmation=max(0, int(data.get(b"awaiting", b"0"))),
    )
