"""Email validation (email-validator) and the canonical address used to find duplicates.

Canonical form, after the rules of a large public petitions site: lowercase; drop a `+tag`
from the local part; for gmail.com and googlemail.com also drop dots and treat the two
domains as one. The address as typed is kept for sending mail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import email_validator
from email_validator import EmailNotValidError, EmailSyntaxError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT, EMAIL_MAX_LENGTH
from email_validator.syntax import validate_email_domain_name

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
# The fast path takes only plain ASCII addresses: a dot-atom local part and an ASCII domain.
PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9.\-]+\Z")


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
        self._domain = lru_cache(maxsize=cache_size)(_check_domain)

    def check(self, address: str) -> CheckedEmail:
        """Return the normalized and canonical address, or raise `EmailNotValidError`."""
        normalized, ascii_domain = self._fast(address) or self._full(address)
        if self._deliverability:
            problem = self._resolve(ascii_domain)
            if problem:
                raise EmailNotValidError(problem)
        return CheckedEmail(normalized, canonical_email(normalized))

    @staticmethod
    def _full(address: str) -> tuple[str, str]:
        result = validate_email(address, check_deliverability=False)
        return result.normalized, result.ascii_domain

    def _fast(self, address: str) -> tuple[str, str] | None:
        """`validate_email`'s answer for a plain ASCII address, with the domain checked once per
        domain (signers share a few); None sends anything else to `validate_email` itself.

        The same steps in the same order: a dot-atom local part is valid as typed (lowercased
        only for RFC 2142 names), then the domain, then the lengths (beyond them: the full path,
        for its exact message). Proven equal by tests/pipeline/test_emails_fast.py.
        """
        local, _, domain = address.partition("@")
        if not DOT_ATOM_TEXT.match(local) or not PLAIN_DOMAIN.match(domain):
            return None
        checked = self._domain(domain)
        if isinstance(checked, str):
            raise EmailSyntaxError(checked)
        unicode_domain, ascii_domain = checked
        if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
            local = local.lower()
        normalized = f"{local}@{unicode_domain}"
        longest = max(len(address), len(normalized.encode()), len(local) + 1 + len(ascii_domain))
        return (normalized, ascii_domain) if longest <= EMAIL_MAX_LENGTH else None


def _check_domain(domain: str) -> tuple[str, str] | str:
    """(domain, ASCII domain) as email-validator normalises them, or its reason for refusing."""
    try:
        info = validate_email_domain_name(
            domain,
            test_environment=email_validator.TEST_ENVIRONMENT,
            globally_deliverable=email_validator.GLOBALLY_DELIVERABLE,
        )
    except EmailSyntaxError as exc:
        return str(exc)
    return info["domain"], info["ascii_domain"]


def _resolve_domain(domain: str) -> str | None:
    """None if `domain` can receive mail, else why not (email-validator's own DNS check)."""
    from email_validator.deliverability import validate_email_deliverability

    try:
        validate_email_deliverability(domain, domain)
    except EmailNotValidError as exc:
        return str(exc)
    return None
