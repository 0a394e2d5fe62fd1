"""Redis adapter for the abuse limits: count a batch's rate windows in one round trip.

`AbuseGuard` is the Drainer's `abuse` collaborator: given a batch's planned rows it returns
them with `state = 'fraudulent'` where `worker.pipeline.abuse` says so. The windows are sets of
receipts (`Keys.abuse_window`: a sorted set, or a string while a window holds one), so counting
is idempotent: an entry redelivered after a crash, or a batch retried after PostgreSQL refused
it, sees the same counts as the first time. One petition keeps at most `windows_per_petition`
windows (`Keys.abuse_index`); past it the least recently used go, so made-up addresses cannot
grow Redis without bound.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis

from worker.drain.streams import lua, translated
from worker.errors import QueueUnavailable
from worker.keys import Keys
from worker.pipeline.abuse import (
    FRAUDULENT,
    AbusePolicy,
    PriorCounts,
    RateLimit,
    judge,
    parse_domains,
    parse_emails,
    rows_to_count,
)
from worker.pipeline.iphash import allowed_ip_hashes
from worker.pipeline.plan import Row
from worker.settings import Settings

log = logging.getLogger("sigingest.abuse")
# Windows stay in Redis this long after their last use, so a backlog drained late still finds them.
TTL_GRACE_SECONDS = 3600


def policy_from_settings(settings: Settings) -> AbusePolicy:
    """The policy the settings describe; raises `ValueError` naming a bad `ALLOWED_IPS` entry."""
    return AbusePolicy(
        burst=RateLimit(settings.rate_burst_limit, settings.rate_burst_seconds),
        sustained=RateLimit(settings.rate_sustained_limit, settings.rate_sustained_seconds),
        allowed_ip_hashes=allowed_ip_hashes(
            settings.ip_hash_secret.encode(), settings.allowed_ips, settings.ipv6_prefix_length
        ),
        allowed_domains=parse_domains(settings.allowed_domains),
        blocked_domains=parse_domains(settings.blocked_domains),
        blocked_emails=parse_emails(settings.blocked_emails),
    )


class AbuseGuard:
    """Marks a batch's rows fraudulent by the policy. Raises `QueueUnavailable` (retry later)
    when Redis does not answer: the batch is then not written."""

    def __init__(
        self, client: redis.Redis, keys: Keys, policy: AbusePolicy, *, windows_per_petition: int = 100_000
    ) -> None:
        self._keys = keys
        self.policy = policy
        self._windows_per_petition = windows_per_petition
        self._windows = client.register_script(lua("abuse_windows"))

    def __call__(self, rows: list[Row]) -> list[Row]:
        to_count = rows_to_count(rows, self.policy)
        judged = judge(rows, self.prior_counts(to_count), self.policy)
        fraudulent = sum(row.state == FRAUDULENT for row in judged)
        if fraudulent:
            log.info(
                "abuse limits: %d of %d signatures in the batch marked fraudulent", fraudulent, len(rows)
            )
        return judged

    def prior_counts(self, rows: Sequence[Row]) -> dict[str, PriorCounts]:
        """Add `rows` to their windows and return, per receipt, the signatures before each in
        each window; a receipt left out has none in either."""
        if not rows:
            return {}
        groups: dict[str, list[Row]] = {}
        keys = self._keys.abuse_windows([(row.petition_id, row.ip_hash) for row in rows])  # type: ignore[misc]
        for key, row in zip(keys, rows, strict=True):
            group = groups.get(key)
            if group is None:
                groups[key] = [row]
            else:
                group.append(row)
        burst, sustained = self.policy.burst.seconds, self.policy.sustained.seconds
        petitions, singles, others, layout = _by_petition(groups)
        ttl = 2 * max(burst, sustained) + TTL_GRACE_SECONDS
        args: list[Any] = [burst * 1000, sustained * 1000, ttl, self._windows_per_petition, len(groups)]
        args += (0, len(petitions), *layout, len(singles))  # 0: the batch's newest ms, set below
        indexes = [self._keys.abuse_index(p) for p in petitions]
        order: list[str] = []
        millis: dict[datetime, int] = {}  # the rows of a spike share their accepted-at
        for key in singles:
            row = groups[key][0]
            args.append(f"{millis.get(row.accepted_at) or _ms(row.accepted_at, millis)} {row.receipt}")
            order.append(row.receipt)
        for key in others:
            group = groups[key]
            args.append(len(group))
            for row in group:
                args += (row.receipt, millis.get(row.accepted_at) or _ms(row.accepted_at, millis))
                order.append(row.receipt)
        args[5] = max(millis.values())
        with translated():
            try:
                reply: Any = self._windows(keys=singles + others + indexes, args=args)
            except redis.ResponseError as exc:  # out of memory, read-only replica: try again later
                raise QueueUnavailable(f"abuse windows: {str(exc)[:80]}") from None
        return {
            order[int(reply[n]) - 1]: PriorCounts(int(reply[n + 1]), int(reply[n + 2]))
            for n in range(0, len(reply), 3)
        }


def _by_petition(groups: dict[str, list[Row]]) -> tuple[list[int], list[str], list[str], list[int]]:
    """The batch's petitions; its one-member windows and its other windows, each in petition
    order; and per petition how many of each (the script indexes a petition's windows together)."""
    singles_of: dict[int, list[str]] = {}
    others_of: dict[int, list[str]] = {}
    for key, group in groups.items():
        (singles_of if len(group) == 1 else others_of).setdefault(group[0].petition_id, []).append(key)
    petitions = sorted(singles_of.keys() | others_of.keys())
    singles = [key for p in petitions for key in singles_of.get(p, ())]
    others = [key for p in petitions for key in others_of.get(p, ())]
    layout = [n for p in petitions for n in (len(singles_of.get(p, ())), len(others_of.get(p, ())))]
    return petitions, singles, others, layout


def _ms(accepted_at: datetime, millis: dict[datetime, int]) -> int:
    ms = millis[accepted_at] = round(accepted_at.timestamp() * 1000)
    return ms
