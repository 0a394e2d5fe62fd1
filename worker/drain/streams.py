"""Redis adapter for the worker side: read a batch, acknowledge, claim stale, dead-letter, trim.

Every redis-py error is translated to `QueueUnavailable` here, so the drain loop knows only
"retry later". Lua scripts live beside this module in `lua/`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import redis

from worker.errors import QueueUnavailable
from worker.keys import CONSUMER_GROUP, Keys
from worker.pipeline.entry import FIELD, Entry


def lua(name: str) -> str:
    """The text of `worker/drain/lua/<name>.lua`."""
    return resources.files("worker.drain").joinpath("lua", f"{name}.lua").read_text()


@contextmanager
def translated(on_unavailable: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Redis unreachable, loading, refusing writes (out of memory under `noeviction`, a failed
    save, a demoted primary) or ending a blocked read becomes `QueueUnavailable`: retry later.
    `on_unavailable` counts it (intake metrics)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as exc:
        on_unavailable()
        raise QueueUnavailable(str(exc) or type(exc).__name__) from None
    except (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError) as exc:
        # redis-py strips the "OOM"/"READONLY" prefix and raises these classes instead.
        on_unavailable()
        raise QueueUnavailable(f"{type(exc).__name__}: {str(exc)[:80]}") from None
    except redis.ResponseError as exc:
        # UNBLOCKED: a blocking read ended by the server, as when a failover demotes it.
        # NOGROUP: the streams are gone (a Redis that restarted empty, or a demoted primary still
        # answering reads while it resyncs); the drainer creates them again before its next read.
        if str(exc).startswith(("OOM", "MISCONF", "LOADING", "UNBLOCKED", "NOGROUP")):
            on_unavailable()
            raise QueueUnavailable(str(exc)[:80]) from None
        raise


class SignatureStreams:
    """The shard streams as one consumer group sees them."""

    def __init__(self, client: redis.Redis, keys: Keys, group: str = CONSUMER_GROUP) -> None:
        self._redis = client
        # The same connections, but XREADGROUP's reply left as Redis sends it: redis-py would
        # build a dict per entry, which cost more than decoding the entry itself.
        self._raw = redis.Redis(connection_pool=client.connection_pool)
        self._raw.set_response_callback("XREADGROUP", _as_sent)
        self._keys = keys
        self._group = group
        self._trim = client.register_script(lua("trim"))
        self._streams = keys.streams()

    def ensure_groups(self) -> None:
        """Create the consumer group on every shard (from the stream's start) if missing."""
        with translated():
            for stream in self._streams:
                try:
                    self._redis.xgroup_create(stream, self._group, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

    def share(self, batch_size: int) -> int:
        """How many new entries `read` asks each shard for."""
        return max(1, math.ceil(batch_size / self._keys.shards))

    def read(self, consumer: str, batch_size: int, block_ms: int) -> list[Entry]:
        """New entries from every shard, up to `share(batch_size)` from each, waiting up to
        `block_ms`."""
        per_shard = self.share(batch_size)
        with translated():
            reply: Any = self._raw.xreadgroup(
                self._group,
                consumer,
                dict.fromkeys(self._streams, ">"),
                count=per_shard,
                block=block_ms,
            )
        if isinstance(reply, dict):  # RESP3: {stream: [entries]}
            reply = list(reply.items())
        entries: list[Entry] = []
        for stream, messages in reply or []:
            shard = self._keys.shard_of(_text(stream))
            for entry_id, fields in messages:
                if fields and fields[0] == FIELD:
                    payload = fields[1]
                else:  # a deleted entry (no fields), or another producer's field order
                    payload = dict(zip(fields[::2], fields[1::2], strict=True)).get(FIELD) if fields else None
                entries.append(_new_entry(Entry, (shard, entry_id.decode(), payload, 1)))
        return entries

    def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries another consumer has held longer than `min_idle_ms`.

        Returns them with their delivery count (this delivery included), so the caller can
        dead-letter an entry that keeps failing.
        """
        claimed: list[Entry] = []
        with translated():
            for shard, stream in enumerate(self._streams):
                pending: Any = self._redis.xpending_range(
                    stream, self._group, min="-", max="+", count=count, idle=min_idle_ms
                )
                if not pending:
                    continue
                deliveries = {_text(p["message_id"]): int(p["times_delivered"]) + 1 for p in pending}
                ids: list[Any] = list(deliveries)
                messages = self._redis.xclaim(stream, self._group, consumer, min_idle_ms, ids)
                claimed.extend(_entries(shard, messages, deliveries))
        return claimed

    def touch(self, consumer: str, entries: Sequence[Entry]) -> None:
        """Reset the idle time of entries this consumer still works on, so nobody claims them."""
        with translated(), self._redis.pipeline(transaction=False) as pipe:
            for shard, ids in _ids_by_shard(entries):
                pipe.xclaim(self._keys.stream(shard), self._group, consumer, 0, ids, justid=True)
            pipe.execute()

    def ack(self, entries: Sequence[Entry]) -> None:
        """Acknowledge processed entries, then trim what every consumer has acknowledged."""
        if not entries:
            return
        with translated(), self._redis.pipeline(transaction=False) as pipe:
            for shard, ids in _ids_by_shard(entries):
                stream = self._keys.stream(shard)
                pipe.xack(stream, self._group, *ids)
                self._trim(keys=[stream], args=[self._group], client=pipe)
            pipe.execute()

    def dead_letter(self, entry: Entry, error: str) -> None:
        """Move an entry to the dead-letter stream with its error, and acknowledge it, atomically."""
        with translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self._keys.dead_letters,
                {
                    "shard": entry.shard,
                    "entry_id": entry.entry_id,
                    "payload": entry.payload or b"",
                    "error": error[:2000],
                    "deliveries": entry.deliveries,
                },
            )
            pipe.xack(self._keys.stream(entry.shard), self._group, entry.entry_id)
            pipe.execute()


_new_entry = tuple.__new__  # Entry(...) without its keyword-handling __new__: one C call


def _as_sent(response: Any, **options: Any) -> Any:
    return response


def _entries(shard: int, messages: Any, deliveries: dict[str, int]) -> list[Entry]:
    """Redis's [(id, {field: value})] as entries; a deleted entry's fields come back empty."""
    entries = []
    for entry_id, fields in messages:
        key = _text(entry_id)
        entries.append(Entry(shard, key, fields.get(FIELD) if fields else None, deliveries.get(key, 1)))
    return entries


def _ids_by_shard(entries: Sequence[Entry]) -> list[tuple[int, list[Any]]]:
    """The entries' ids per shard, shards in order."""
    ids: dict[int, list[Any]] = {}
    for entry in entries:
        shard_ids = ids.get(entry.shard)
        if shard_ids is None:
            ids[entry.shard] = [entry.entry_id]
        else:
            shard_ids.append(entry.entry_id)
    return sorted(ids.items())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
