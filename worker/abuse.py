"""Redis adapter for the abuse limits: count a batch's rate windows in one round trip.

`AbuseGuard` is the Drainer's `abuse` collaborator: given a batch's planned rows it returns
them with `state = 'fraudulent'` where `worker.pipeline.abuse` says so. The windows are sorted
sets of receipts (`Keys.abuse_window`), so counting is idempotent: an entry redelivered after a
crash, or a batch retried after PostgreSQL refused it, sees the same counts as the first time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

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
from worker.streams import lua, translated

log = logging.getLogger("sigingest.abuse")
# Windows stay in Redis this long after their last use, so a backlog drained late still finds them.
TTL_GRACE_SECONDS = 3600


def policy_from_settings(settings: Settings) -> AbusePolicy:
    """The policy the settings describe; raises `ValueError` naming a bad `ALLOWED_IPS` entry."""
    return AbusePolicy(
        burst=RateLimit(settings.rate_burst_limit, settings.rate_burst_seconds),
        sustained=RateLimit(settings.rate_sustained_limit, settings.rate_sustained_seconds),
        allowed_ip_hashes=allowed_ip_hashes(settings.ip_hash_secret.encode(), settings.allowed_ips),
        allowed_domains=parse_domains(settings.allowed_domains),
        blocked_domains=parse_domains(settings.blocked_domains),
        blocked_emails=parse_emails(settings.blocked_emails),
    )


def _ms(row: Row) -> int:
    return round(row.accepted_at.timestamp() * 1000)


class AbuseGuard:
    """Marks a batch's rows fraudulent by the policy. Raises `QueueUnavailable` (retry later)
    when Redis does not answer: the batch is then not written."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: AbusePolicy) -> None:
        self._keys = keys
        self.policy = policy
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
        """Add `rows` to their windows and return, per receipt, the signatures before each."""
        if not rows:
            return {}
        groups: dict[str, list[Row]] = {}
        for row in rows:
            assert row.ip_hash is not None  # rows_to_count keeps only rows with one
            groups.setdefault(self._keys.abuse_window(row.petition_id, row.ip_hash), []).append(row)
        burst, sustained = self.policy.burst.seconds, self.policy.sustained.seconds
        args: list[Any] = [burst * 1000, sustained * 1000, 2 * max(burst, sustained) + TTL_GRACE_SECONDS]
        order: list[str] = []
        for group in groups.values():
            args.append(len(group))
            for row in group:
                args.append(row.receipt)
                args.append(_ms(row))
                order.append(row.receipt)
        with translated():
            try:
                reply: Any = self._windows(keys=list(groups), args=args)
            except redis.ResponseError as exc:  # out of memory, read-only replica: try again later
                raise QueueUnavailable(f"abuse windows: {str(exc)[:80]}") from None
        return {
            receipt: PriorCounts(int(reply[2 * n]), int(reply[2 * n + 1])) for n, receipt in enumerate(order)
        }
