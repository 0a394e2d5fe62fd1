"""The intake's Redis edge: append a submission (one Lua call) and read the petition registry.

Appends issued by concurrent requests in the same event-loop tick go to Redis together, one
pipeline of Lua calls (still one call per submission, each atomic): under load many requests
share one round trip instead of each paying its own.

With ACK_DURABILITY `replica` or `fsync` the round trip ends with one WAIT (or WAITAOF) that
every append in it shares; when it falls short, each of them is refused with `NotDurable`.

Errors from redis-py become `QueueUnavailable`, answered as 503 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

from api_stub.intake.memory import MemoryGuard
from worker.drain.durability import AckPolicy, fsync_policy, status, text_dict
from worker.drain.registry import PetitionCard, card_from_hash
from worker.drain.streams import lua, translated
from worker.keys import Keys
from worker.pipeline.entry import encode, encode_confirmation
from worker.pipeline.fields import SignatureFields

Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of one append: `ok` (with the receipt), `unknown`, `closed`, `full` or `reused`;
    `confirm`: the petition counts the signature only once its signer confirms by email."""

    status: str
    receipt: str | None = None
    confirm: bool = False


class SharedRoundTrips:
    """Runs a Lua script for many callers: calls made in one event-loop tick are sent as one
    pipeline of EVALSHA when the loop next turns. Each caller gets its own reply or error.

    Plain EVALSHA rather than redis-py's pipelined `Script`, which asks `SCRIPT EXISTS` before
    every pipeline (a second round trip); a `NOSCRIPT` reply (Redis restarted) loads the script
    and sends those calls again: a refused EVALSHA ran nothing.
    """

    def __init__(self, client: aioredis.Redis, source: str, ack: AckPolicy | None = None) -> None:
        self._redis, self._source = client, source
        self.ack = ack or AckPolicy()
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._waiting: list[Call] = []
        self._flights: set[asyncio.Task[None]] = set()

    async def call(self, keys: list[Any], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send)
        self._waiting.append((keys, args, future))
        return await future

    def _send(self) -> None:
        calls, self._waiting = self._waiting, []
        flight = asyncio.ensure_future(self._flight(calls))
        self._flights.add(flight)  # keep a reference until it lands
        flight.add_done_callback(self._flights.discard)

    async def _flight(self, calls: list[Call]) -> None:
        try:
            replies = await self._evalsha(calls)
            missing = [c for c, r in zip(calls, replies, strict=True) if isinstance(r, NoScriptError)]
            if missing:
                await self._redis.script_load(self._source)
                again = dict(zip(map(id, missing), await self._evalsha(missing), strict=True))
                replies = [again.get(id(c), r) for c, r in zip(calls, replies, strict=True)]
        except Exception as exc:
            for *_, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), reply in zip(calls, replies, strict=True):
            if future.done():
                continue  # the request went away; its append stands, like any sent append
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _evalsha(self, calls: list[Call]) -> list[Any]:
        """Every call's EVALSHA in one write, then the replies in order, an error reply as its
        exception (`NoScriptError`, ...). What redis-py's pipeline did, without its per-command
        objects: hiredis packs all commands at once.

        Sent at most once. Only getting a connection is retried (the client's `Retry`, and the
        pool replaces a connection the server closed): until then nothing reached Redis. A
        timeout or a dropped connection after the write may follow appends that ran, so it is
        raised (503, `Retry-After`), never sent again: the signer's retry with the same
        idempotency key gets the first receipt, and one without a key is the same person.

        The acknowledgement command (WAIT, WAITAOF) goes last, on the same connection (it
        covers that connection's writes); when it falls short every successful reply becomes
        `NotDurable`."""
        commands = [pack_command(("EVALSHA", self._sha, len(k), *k, *a)) for k, a, _ in calls]
        ack = self.ack.command()
        if ack is not None:
            commands.append(pack_command(ack))
        pool = self._redis.connection_pool
        conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies: list[Any] = await _exchange(conn, b"".join(commands), len(commands))
        except BaseException:
            await conn.disconnect()  # its replies may still arrive: never reuse it
            raise
        finally:
            await pool.release(conn)
        if ack is None:
            return replies
        confirmation = replies.pop()
        if self.ack.confirmed(confirmation):
            return replies
        refused = self.ack.refusal(confirmation)
        return [r if isinstance(r, Exception) else refused for r in replies]


async def _exchange(conn: AbstractConnection, packed: bytes, replies: int) -> list[Any]:
    await conn.send_packed_command(packed)
    out: list[Any] = []
    for _ in range(replies):
        try:
            out.append(await conn.read_response())
        except ResponseError as exc:
            out.append(exc)
    return out


class IntakeQueue:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        idempotency_ttl: int,
        max_backlog: int,
        idempotency_max_keys: int = 0,
        memory_headroom: float = 0.0,
        ack: AckPolicy | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._append = SharedRoundTrips(client, lua("append"), ack)
        self._confirm = SharedRoundTrips(client, lua("confirm"), ack)
        self._ttl = idempotency_ttl
        self._max_keys = idempotency_max_keys
        self._shard_limit = math.ceil(max_backlog / keys.shards) if max_backlog else 0
        self._memory = MemoryGuard(client, memory_headroom)
        self.on_unavailable: Callable[[], None] = lambda: None  # counts Redis errors

    async def append(
        self,
        petition_id: int,
        fields: SignatureFields,
        receipt: str,
        accepted_ms: int,
        ip_hash: str | None,
        *,
        honeypot: bool = False,
    ) -> Appended:
        """Check the registry and append atomically; returns the receipt (a prior one when the
        idempotency key was seen before with the same request, `reused` when it answered another
        request: nothing is queued then). `honeypot` marks the entry to be stored fraudulent."""
        shard = self._keys.shard_for_email(fields.email)
        stream = self._keys.stream(shard)
        idem = (
            self._keys.idempotency(petition_id, _digest(fields.idempotency_key))
            if fields.idempotency_key
            else stream
        )
        payload = encode(receipt, petition_id, accepted_ms, ip_hash, fields, honeypot=honeypot)
        keyed = "1" if fields.idempotency_key else "0"
        stamp = fingerprint(petition_id, fields) if fields.idempotency_key else ""
        # Keys remembered in this TTL period and the one before: an upper bound on live keys.
        period = accepted_ms // 1000 // self._ttl
        counts = [self._keys.idempotency_count(period), self._keys.idempotency_count(period - 1)]
        with translated(self.on_unavailable):
            if await self._memory.full():
                return Appended("full")  # the rest of Redis's memory is the workers' room
            reply = await self._append.call(
                keys=[self._keys.petition(petition_id), stream, idem, self._keys.totals, *counts],
                args=[payload, receipt, self._ttl, self._shard_limit, keyed, stamp, self._max_keys],
            )
        status = reply[0].decode()
        if len(reply) < 2:
            return Appended(status)
        return Appended(status, reply[1].decode(), len(reply) > 2 and reply[2] == b"1")

    async def confirm(self, petition_id: int, receipt: str, confirmed_ms: int) -> str:
        """Queue a confirmation (its token already checked): `ok`, `unknown` petition or `full`."""
        stream = self._keys.stream(self._keys.shard_for_email(receipt))  # any stable spread will do
        payload = encode_confirmation(receipt, petition_id, confirmed_ms)
        with translated(self.on_unavailable):
            if await self._memory.full():
                return "full"  # the rest of Redis's memory is the workers' room
            reply = await self._confirm.call(
                keys=[self._keys.petition(petition_id), stream, self._keys.totals],
                args=[payload, self._shard_limit],
            )
        return bytes(reply).decode()

    async def petition(self, petition_id: int) -> PetitionCard | None:
        with translated(self.on_unavailable):
            data: Any = await self._redis.hgetall(self._keys.petition(petition_id))
        return card_from_hash(petition_id, data) if data else None

    async def ping(self) -> bool:
        with translated(self.on_unavailable):
            return bool(await self._redis.ping())

    async def check_durability(self) -> None:
        """Settle how `fsync` is confirmed on this server (WAITAOF, or `appendfsync always`);
        raises `DurabilityUnsupported` when it cannot be. Run once at start."""
        if self._append.ack.mode != "fsync":
            return
        with translated(self.on_unavailable):
            server: Any = await self._redis.info("server")
            config = await self._append_config()
        self._append.ack = fsync_policy(self._append.ack, server, config)

    async def durability(self) -> dict[str, Any]:
        """The acknowledgement mode in force and whether it holds now (`durability.status`)."""
        with translated(self.on_unavailable):
            replication: Any = await self._redis.info("replication")
            config = await self._append_config()
        return status(self._append.ack, replication, config)

    async def _append_config(self) -> dict[str, str]:
        """CONFIG GET append* (appendonly, appendfsync); empty where CONFIG is disabled."""
        try:
            reply: Any = await self._redis.config_get("append*")
        except ResponseError:
            return {}
        return text_dict(reply)


def fingerprint(petition_id: int, fields: SignatureFields) -> str:
    """What an idempotency key remembers of the request it answered: the petition and the checked
    fields (so JSON and form bodies, key order and white space trimmed by the checks do not
    matter), never the key itself. A digest, so the key's value carries no address."""
    canonical = orjson.dumps([petition_id, fields.as_payload()], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]
