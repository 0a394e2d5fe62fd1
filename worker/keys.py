"""Every Redis name that crosses the wire: streams, the consumer group, key prefixes.

One `Keys` value per deployment (or per test: tests give each its own prefix). Petition ids
that reach a key have been parsed to `int` first, so request data never shapes a key.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

CONSUMER_GROUP = "ingest"
INGEST_QUEUE = "ingest"
REMINDERS_QUEUE = "reminders"
# The drain task's name: slices are sent by name, so the scheduler imports no task module.
DRAIN_TASK = "ingest.drain"
HEX_DIGEST = re.compile(r"[0-9a-f]{1,64}")
HEX_DIGEST_LINES = re.compile(r"(?:[0-9a-f]{1,64}\n)*")


@dataclass(frozen=True)
class Keys:
    prefix: str = "sig:"
    shards: int = 8

    def stream(self, shard: int) -> str:
        """Shard `shard`'s stream of accepted submissions."""
        return f"{self.prefix}stream:{shard}"

    def streams(self) -> list[str]:
        return [self.stream(shard) for shard in range(self.shards)]

    def shard_of(self, stream_name: str) -> int:
        return int(stream_name.rsplit(":", 1)[1])

    def shard_for_email(self, email: str) -> int:
        """A stable shard from the lowercased address, so one petition spreads over all shards."""
        return zlib.crc32(email.lower().encode("utf-8", "surrogatepass")) % self.shards

    def petition(self, petition_id: int) -> str:
        """Hash: the registry entry the intake checks (status, title, starter) and the live count."""
        return f"{self.prefix}petition:{int(petition_id)}"

    def idempotency(self, petition_id: int, key_digest: str) -> str:
        """Receipt already given for an idempotency key (the key itself is hashed first)."""
        return f"{self.prefix}idem:{int(petition_id)}:{key_digest}"

    def idempotency_count(self, period: int) -> str:
        """String: how many idempotency keys were remembered in TTL period `period` (the cap)."""
        return f"{self.prefix}idem-count:{int(period)}"

    @property
    def erased(self) -> str:
        """Sorted set: keyed hashes of erased people's canonical emails, scored by when (ms)."""
        return f"{self.prefix}erased"

    @property
    def dead_letters(self) -> str:
        """Stream of entries that could not be processed after `MAX_DELIVERIES` tries."""
        return f"{self.prefix}deadletter"

    @property
    def registry_index(self) -> str:
        """Set of petition ids present in the registry (for full resyncs)."""
        return f"{self.prefix}petitions"

    @property
    def totals(self) -> str:
        """Hash of running totals for `sigingest stats` (accepted, persisted, duplicates, ...)."""
        return f"{self.prefix}totals"

    def reminder_lock(self) -> str:
        return f"{self.prefix}lock:reminders"

    @property
    def pending_unsubscribes(self) -> str:
        """Hash canonical email -> unsubscribe time (ms), written by the intake and moved into
        PostgreSQL's `unsubscribes` by the reminders task."""
        return f"{self.prefix}unsubscribes:pending"

    @property
    def reminder_follow_up(self) -> str:
        """String with a TTL: a follow-up reminders run is already queued for due retries."""
        return f"{self.prefix}reminders:follow-up"

    # Operating it: recent activity for `sigingest stats`
    def recent(self, second: int) -> str:
        """Hash petition id -> signatures persisted in that epoch second (expires after minutes)."""
        return f"{self.prefix}recent:{int(second)}"

    # Trustworthy counts: abuse windows
    def abuse_window(self, petition_id: int, ip_hash: str) -> str:
        """Receipts from one hashed IP on one petition, by accepted-at (ms): a sorted set, or a
        string `<ms> <receipt>` while it holds one (worker/drain/lua/abuse_windows.lua).

        An IP hash that is not the intake's hex digest (another producer) is digested again,
        so entry data never shapes a key."""
        if not HEX_DIGEST.fullmatch(ip_hash):
            ip_hash = hashlib.sha256(ip_hash.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{self.prefix}abuse:{int(petition_id)}:{ip_hash}"

    def abuse_index(self, petition_id: int) -> str:
        """Sorted set: the keys of one petition's abuse windows, by the newest accepted-at (ms) of
        the last batch that used each; past RATE_WINDOWS_PER_PETITION the least recently used
        windows go. "recent" is no hex digest, so it never names a window."""
        return f"{self.prefix}abuse:{int(petition_id)}:recent"

    def abuse_windows(self, windows: list[tuple[int, str]]) -> list[str]:
        """`abuse_window` of each (petition id, IP hash), the hashes checked in one regex call
        (a batch has thousands)."""
        hashes = "\n".join([ip_hash for _, ip_hash in windows]) + "\n"
        if hashes.count("\n") == len(windows) and HEX_DIGEST_LINES.fullmatch(hashes):
            prefix = f"{self.prefix}abuse:"
            return [f"{prefix}{int(petition_id)}:{ip_hash}" for petition_id, ip_hash in windows]
        return [self.abuse_window(petition_id, ip_hash) for petition_id, ip_hash in windows]

    @property
    def suspicious_report(self) -> str:
        """String: the latest hourly suspicious-share report (JSON), for `sigingest stats`."""
        return f"{self.prefix}suspicious"


def drainer_lease(keys: Keys, hostname: str, slot: int) -> str:
    """String: the id of the drain task that owns slot `slot` of worker `hostname`."""
    return f"{keys.prefix}drainer:{hostname}:{int(slot)}"
