"""Email validation (email-validator) and the canonical address used to find duplicates.

Canonical form, after the rules of a large public petitions site: lowercase; drop a `+tag`
from the local part; for gmail.com and googlemail.com also drop dots and treat the two
domains as one. The address as typed is kept for sending mail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def canonical_email(address: str) -> str:
    """The deduplication key of a syntactically valid address. Idempotent."""
    local, _, domain = address.rpartition("@")
    local, domain = local.lower(), domain.lower().rstrip(".")
    untagged = local.split("+", 1)[0]
    if untagged:
        local = untagged
    if domain in GMAIL_DOMAINS:
        local = local.replace(".", "") or local
        domain = "gmail.com"
    return f"{local}@{domain}"


@dataclass(frozen=True, slots=True)
class CheckedEmail:
    normalized: str
    canonical: str


class EmailChecker:
    """Validates addresses; with `deliverability` on, DNS answers are cached per domain.

    email-validator would do a DNS look-up inside every `validate_email` call; to keep a spike
    from becoming a DNS storm we check syntax for every address but resolve each domain once per
    process (an LRU cache of `cache_size` domains).
    """

    def __init__(
        self,
        *,
        deliverability: bool = False,
        resolve: Callable[[str], str | None] | None = None,
        cache_size: int = 65_536,
    ) -> None:
        self._deliverability = deliverability
        self._resolve = lru_cache(maxsize=cache_size)(resolve or _resolve_domain)

    def check(self, address: str) -> CheckedEmail:
        """Return the normalized and canonical address, or raise `EmailNotValidError`."""
        result = validate_email(address, check_deliverability=False)
        if self._deliverability:
            problem = self._resolve(result.ascii_domain)
            if problem:
                raise EmailNotValidError(problem)
        return CheckedEmail(result.normalized, canonical_email(result.normalized))


def _resolve_domain(domain: str) -> str | None:
    """None if `domain` can receive mail, else why not (email-validator's own DNS check)."""
    from email_validator.deliverability import validate_email_deliverability

    try:
        validate_email_deliverability(domain, domain)
    except EmailNotValidError as exc:
        return str(exc)
    return None
