"""Abuse limits as a pure step over a batch's rows: which rows are fraudulent, and why.

Rules, after a large public petitions site, checked in this order:
1. a blocked canonical email or a blocked email domain makes a row `fraudulent`;
2. a row from an allowed IP (by hash) or an allowed email domain is exempt from rate limits;
3. otherwise a row is `fraudulent` when its hashed IP already has `burst_limit` signatures on the
   same petition in the `burst_seconds` before it, or `sustained_limit` in `sustained_seconds`.

"Before it" is by `accepted_at` (the intake's clock, carried in the entry), ties broken by
receipt, so the outcome does not depend on when or how often a worker sees the entry. Every
submission that is rate-checked takes a place in the window, fraudulent ones included: a
script that keeps hammering stays over the limit. Counting is the adapter's job
(`worker/drain/abuse.py`): this module says which rows need counting and judges them given the counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from worker.pipeline.emails import canonical_email
from worker.pipeline.plan import Row

FRAUDULENT = "fraudulent"


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int  # signatures allowed in the window before this one; 0 = no limit
    seconds: int


@dataclass(frozen=True)
class AbusePolicy:
    burst: RateLimit = RateLimit(1, 60)
    sustained: RateLimit = RateLimit(5, 300)
    allowed_ip_hashes: frozenset[str] = frozenset()
    allowed_domains: frozenset[str] = frozenset()
    blocked_domains: frozenset[str] = frozenset()
    blocked_emails: frozenset[str] = frozenset()  # canonical

    @cached_property
    def limits(self) -> tuple[RateLimit, ...]:
        return tuple(limit for limit in (self.burst, self.sustained) if limit.limit > 0)


@dataclass(frozen=True, slots=True)
class PriorCounts:
    """Signatures from the same hashed IP on the same petition before a row, per window."""

    burst: int
    sustained: int


def parse_domains(spec: str) -> frozenset[str]:
    """A comma-separated domain list, lowercased, without empty items or a leading `@`."""
    return frozenset(d.strip().lower().lstrip("@").rstrip(".") for d in spec.split(",") if d.strip())


def parse_emails(spec: str) -> frozenset[str]:
    """A comma-separated email list in canonical form (so `Ann.Lee+x@gmail.com` blocks annlee@gmail.com)."""
    return frozenset(canonical_email(e.strip()) for e in spec.split(",") if "@" in e)


def domain_of(row: Row) -> str:
    return row.canonical_email.rpartition("@")[2]


def in_domains(domain: str, domains: frozenset[str]) -> bool:
    """True when `domain` or one of its parent domains is listed (cs.ox.ac.uk matches ox.ac.uk)."""
    if not domains:  # the usual case, on the hot path
        return False
    parts = domain.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts)))


def is_blocked(row: Row, policy: AbusePolicy) -> bool:
    return row.canonical_email in policy.blocked_emails or in_domains(domain_of(row), policy.blocked_domains)


def needs_rate_check(row: Row, policy: AbusePolicy) -> bool:
    """Rows the rate limits apply to: with an IP hash, not allowed by IP or by domain."""
    return (
        bool(policy.limits)
        and row.ip_hash is not None
        and row.ip_hash not in policy.allowed_ip_hashes
        and not in_domains(domain_of(row), policy.allowed_domains)
    )


def rows_to_count(rows: Sequence[Row], policy: AbusePolicy) -> list[Row]:
    """The rows whose hashed IP must be counted in the rate windows (`needs_rate_check`)."""
    if not policy.limits:
        return []
    allowed_ips, allowed_domains = policy.allowed_ip_hashes, policy.allowed_domains
    return [
        row
        for row in rows
        if row.ip_hash is not None
        and row.ip_hash not in allowed_ips
        and not (allowed_domains and in_domains(domain_of(row), allowed_domains))
    ]


def over_limit(counts: PriorCounts, policy: AbusePolicy) -> bool:
    burst, sustained = policy.burst.limit, policy.sustained.limit
    return (burst > 0 and counts.burst >= burst) or (sustained > 0 and counts.sustained >= sustained)


def judge(rows: Sequence[Row], counts: Mapping[str, PriorCounts], policy: AbusePolicy) -> list[Row]:
    """The rows with `state` set to `fraudulent` where a rule says so; others unchanged.

    `counts` maps the receipts of `rows_to_count` to their prior counts; a row missing from it,
    or exempt (no IP hash, an allowed IP or domain), is not rate-limited.
    """
    blocking = bool(policy.blocked_emails or policy.blocked_domains)
    if not blocking and not counts:
        return list(rows)  # the usual batch: nobody blocked, nobody with an earlier signature
    judged = []
    for row in rows:
        prior = counts.get(row.receipt)
        if (blocking and is_blocked(row, policy)) or (
            prior is not None and over_limit(prior, policy) and needs_rate_check(row, policy)
        ):
            row = row._replace(state=FRAUDULENT)
        judged.append(row)
    return judged
