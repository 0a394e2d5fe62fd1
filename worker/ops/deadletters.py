"""Dead letters: entries that failed `MAX_DELIVERIES` times, kept with their error for an operator.

`sigingest deadletters list` shows them (never the payload's personal data, only its size and
the error); `sigingest deadletters requeue [ID...]` puts each payload back on its shard stream
and deletes it from the dead-letter stream in one Lua call, so an entry is never in both places
and never in neither. Requeue after the cause is fixed: the worker processes it as new, and the
store's unique receipts make a second arrival of an already stored signature change nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from worker.drain.streams import lua, translated
from worker.keys import Keys
from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered entry: where it came from, how often it was tried, and why it failed."""

    id: str
    shard: int
    entry_id: str
    deliveries: int
    error: str
    payload_bytes: int


class DeadLetters:
    """The dead-letter stream of one deployment."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._requeue = client.register_script(lua("requeue"))

    def oldest(self, count: int = 100) -> list[DeadLetter]:
        """The oldest `count` dead letters."""
        with translated():
            reply: Any = self._redis.xrange(self._keys.dead_letters, count=count)
        return [_dead_letter(entry_id, fields) for entry_id, fields in reply]

    def requeue(self, ids: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """Move the given dead letters (all when none given) back to their shard streams.
        Returns (requeued ids, ids not found or not requeueable); each move is atomic."""
        targets = list(ids) or [letter.id for letter in self.oldest(count=1_000_000)]
        done: list[str] = []
        missing: list[str] = []
        for dead_id in targets:
            shard = self._shard_of(dead_id)
            moved = shard is not None and self._move(dead_id, shard)
            (done if moved else missing).append(dead_id)
        return done, missing

    def _shard_of(self, dead_id: str) -> int | None:
        """The shard a dead letter came from, or None if there is no such (valid) dead letter."""
        try:
            with translated():
                found: Any = self._redis.xrange(self._keys.dead_letters, dead_id, dead_id)
        except redis.ResponseError:
            return None  # not a stream id at all
        if not found:
            return None
        shard = _dead_letter(*found[0]).shard
        return shard if 0 <= shard < self._keys.shards else None

    def _move(self, dead_id: str, shard: int) -> bool:
        with translated():
            keys = [self._keys.dead_letters, self._keys.stream(shard)]
            return bool(self._requeue(keys=keys, args=[dead_id, shard]))


def _dead_letter(entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(name: bytes) -> str:
        return fields.get(name, b"").decode(errors="replace")

    def number(name: bytes) -> int:
        value = text(name)
        return int(value) if value.isdigit() else -1

    return DeadLetter(
        id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        shard=number(b"shard"),
        entry_id=text(b"entry_id"),
        deliveries=number(b"deliveries"),
        error=text(b"error"),
        payload_bytes=len(fields.get(b"payload", b"")),
    )


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    from worker.connections import redis_client

    client = redis_client(settings)
    letters = DeadLetters(client, Keys(settings.key_prefix, settings.shards))
    try:
        if args.action == "list":
            found = letters.oldest(args.count)
            for d in found:
                print(
                    f"{d.id}\tshard {d.shard} entry {d.entry_id}\t{d.deliveries} deliveries\t"
                    f"{d.payload_bytes} bytes\t{d.error}"
                )
            print(f"{len(found)} dead letter(s)")
            return 0
        done, missing = letters.requeue(args.ids)
        for dead_id in done:
            print(f"requeued {dead_id}")
        for dead_id in missing:
            print(f"error: no dead letter {dead_id}; nothing changed for it")
        return 1 if missing else 0
    finally:
        client.close()


def register(sub: Any) -> None:
    """Add `sigingest deadletters list|requeue` to the CLI's subparsers."""
    parser = sub.add_parser("deadletters", help="list or requeue entries that kept failing")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="show dead letters with their error")
    listing.add_argument("--count", type=int, default=100)
    requeue = actions.add_parser("requeue", help="put dead letters back on their stream (all if no ID)")
    requeue.add_argument("ids", nargs="*", metavar="ID")
    parser.set_defaults(run=cmd_deadletters)
