"""When an append counts as acknowledged (ACK_DURABILITY), and whether that currently holds.

`local`: the primary has it (a lost primary loses what its replica had not yet received).
`replica`: `WAIT n timeout` after the appends confirms n replicas have them too.
`fsync`: `WAITAOF 1 0 timeout` (Redis >= 7.2) confirms the primary's AOF is fsynced; an older
server must run `appendfsync always`, which fsyncs before it answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import redis

from worker.errors import QueueUnavailable
from worker.settings import Settings

# Replicas acknowledge their offset once a second; one that has not for longer than this (or
# than the WAIT timeout, rounded up) is not counted as holding the appends.
MAX_REPLICA_LAG_SECONDS = 2
WAITAOF_SINCE = (7, 2)


class NotDurable(QueueUnavailable):
    """The append reached the primary, but too few replicas (or no fsync) confirmed it in time:
    answered 503 with Retry-After; the signer's retry is folded by its idempotency key or by
    person."""


class DurabilityUnsupported(RuntimeError):
    """The server cannot give the configured durability: the intake refuses to start."""


@dataclass(frozen=True, slots=True)
class AckPolicy:
    mode: str = "local"
    replicas: int = 1
    timeout_ms: int = 250
    waitaof: bool = False  # `fsync` on a server that has WAITAOF

    @classmethod
    def from_settings(cls, settings: Settings) -> AckPolicy:
        return cls(settings.ack_durability, settings.ack_replicas, settings.ack_timeout_ms)

    def command(self) -> tuple[Any, ...] | None:
        """The command to send after a round trip's appends, or None when the reply suffices."""
        if self.mode == "replica":
            return ("WAIT", self.replicas, self.timeout_ms)
        if self.mode == "fsync" and self.waitaof:
            return ("WAITAOF", 1, 0, self.timeout_ms)
        return None

    def confirmed(self, reply: Any) -> bool:
        """Whether `command()`'s reply confirms the appends before it."""
        if isinstance(reply, Exception):
            return False
        if self.mode == "replica":
            return int(reply) >= self.replicas
        return int(reply[0]) >= 1

    def refusal(self, reply: Any) -> NotDurable:
        what = f"{self.replicas} replica(s)" if self.mode == "replica" else "the AOF fsync"
        return NotDurable(f"{what} did not confirm within {self.timeout_ms} ms (got {reply!r})")


def fsync_policy(policy: AckPolicy, server: dict[str, Any], config: dict[str, Any]) -> AckPolicy:
    """`policy` checked against the server (INFO server, CONFIG GET append*): `fsync` gets
    WAITAOF where the server has it; raises `DurabilityUnsupported` when it cannot fsync."""
    if policy.mode != "fsync":
        return policy
    if str(config.get("appendonly", "no")) != "yes":
        raise DurabilityUnsupported("ACK_DURABILITY=fsync needs the server's appendonly yes")
    version = tuple(int(p) for p in str(server.get("redis_version", "0.0")).split(".")[:2])
    if version >= WAITAOF_SINCE:
        return AckPolicy(policy.mode, policy.replicas, policy.timeout_ms, waitaof=True)
    if str(config.get("appendfsync")) != "always":
        raise DurabilityUnsupported(
            f"ACK_DURABILITY=fsync: Redis {server.get('redis_version')} has no WAITAOF; "
            "it needs appendfsync always"
        )
    return policy


def status(policy: AckPolicy, replication: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """What `/readyz` and `sigingest stats` show: the mode, whether it holds now, the replicas
    connected and their lag. From INFO replication and CONFIG GET append*."""
    replicas = [v for k, v in replication.items() if k.startswith("slave") and isinstance(v, dict)]
    online = [r for r in replicas if r.get("state") == "online"]
    max_lag = max(MAX_REPLICA_LAG_SECONDS, math.ceil(policy.timeout_ms / 1000))
    keeping_up = [r for r in online if int(r.get("lag", 0)) <= max_lag]
    offset = int(replication.get("master_repl_offset", 0))
    found: dict[str, Any] = {
        "mode": policy.mode,
        "replicas_connected": len(online),
        "replica_lag_seconds": max((int(r.get("lag", 0)) for r in online), default=None),
        "replica_lag_bytes": max((offset - int(r.get("offset", 0)) for r in online), default=None),
    }
    if policy.mode == "replica":
        found["replicas_required"] = policy.replicas
        found["holds"] = len(keeping_up) >= policy.replicas
    elif policy.mode == "fsync":
        found["appendfsync"] = config.get("appendfsync")
        found["holds"] = config.get("appendonly") == "yes" and (
            policy.waitaof or config.get("appendfsync") == "always"
        )
    else:
        found["holds"] = True
    return found


def current(client: redis.Redis, policy: AckPolicy) -> dict[str, Any]:
    """`status` read from the server now (sync, for `sigingest stats`). Raises
    `QueueUnavailable` when Redis does not answer."""
    from worker.drain.streams import translated

    with translated():
        replication: Any = client.info("replication")
        try:
            config: Any = client.config_get("append*")
        except redis.ResponseError:  # CONFIG disabled (managed Redis)
            config = {}
    return status(policy, replication, text_dict(config))


def text_dict(reply: dict[Any, Any]) -> dict[str, str]:
    """A reply's keys and values as text (CONFIG GET gives bytes)."""

    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    return {text(k): text(v) for k, v in reply.items()}
