"""Email validation (email-validator) and the canonical address used to find duplicates.

Canonical form, after the rules of a large public petitions site: lowercase; drop a `+tag`
from the local part; for gmail.com and googlemail.com also drop dots and treat the two
domains as one. The address as typed is kept for sending mail.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import email_validator
from email_validator import EmailNotValidError, EmailSyntaxError, validate_email

from worker.pipeline.domains import GMAIL_DOMAINS, domain_facts
from worker.pipeline.email_syntax import (
    DOT_ATOM_TEXT,
    DOT_ATOM_TEXT_INTL,
    EMAIL_MAX_LENGTH,
    LOCAL_PART_MAX_LENGTH,
    RFC2142_NAMES,
    undeliverable,
)


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
        self._resolve = lru_cache(maxsize=cache_size)(resolve or undeliverable)
        self._facts = lru_cache(maxsize=cache_size)(domain_facts)
        self._safe_chars: set[str] = set()  # non-ASCII characters seen in valid local parts

    def check(self, address: str) -> CheckedEmail:
        """Return the normalized and canonical address, or raise `EmailNotValidError`."""
        quick = self._quick(address)
        if quick is not None:
            local, domain, canonical = quick
            return CheckedEmail(f"{local}@{domain}", canonical)
        result = validate_email(address, check_deliverability=False)
        self._raise_if_undeliverable(result.ascii_domain)
        return CheckedEmail(result.normalized, canonical_email(result.normalized))

    def canonical(self, address: str) -> str:
        """`check(address).canonical`, without building the result for the usual address."""
        quick = self._quick(address)
        return quick[2] if quick is not None else self.check(address).canonical

    def _quick(self, address: str) -> tuple[str, str, str] | None:
        """`validate_email`'s answer for the usual address, as (normalized local part, domain,
        canonical address); None sends anything else to `validate_email` itself.

        The fast path, because `validate_email` is the drain's costliest step (BENCHMARKS.md):
        a dot-atom local part of at most 64 characters, ASCII or safe Unicode in NFC, is valid
        as typed (lowercased for RFC 2142 names), so only the cached domain facts and the
        lengths remain. Proven equal by tests/worker/pipeline/test_emails_fast.py."""
        local, _, domain = address.partition("@")
        if len(local) > LOCAL_PART_MAX_LENGTH:
            return None
        if local.isascii():
            if not DOT_ATOM_TEXT.match(local):
                return None
            local_bytes = len(local)
        elif not self._unicode_local_ok(local):
            return None
        else:
            local_bytes = len(local.encode())
        facts = self._facts(domain)
        if facts is None:
            return None
        if isinstance(facts, str):
            raise EmailSyntaxError(facts)
        if local_bytes + 1 + facts.longest > EMAIL_MAX_LENGTH:
            return None  # the general path, for its exact message
        folded = local.lower()
        if local_bytes == len(local) and folded in RFC2142_NAMES:
            local = folded
        self._raise_if_undeliverable(facts.ascii_domain)
        untagged = folded.split("+", 1)[0] if "+" in folded else folded
        if untagged:
            folded = untagged
        if facts.gmail:
            folded = folded.replace(".", "") or folded
        return local, facts.unicode_domain, f"{folded}@{facts.canonical}"

    def _raise_if_undeliverable(self, ascii_domain: str) -> None:
        if self._deliverability:
            problem = self._resolve(ascii_domain)
            if problem:
                raise EmailNotValidError(problem)

    def _unicode_local_ok(self, local: str) -> bool:
        """True when email-validator takes this non-ASCII local part as it is: an international
        dot-atom in NFC whose characters are all letters, numbers, punctuation or symbols (what
        `check_unsafe_chars` lets through anywhere), with SMTPUTF8 allowed."""
        if not email_validator.ALLOW_SMTPUTF8 or not DOT_ATOM_TEXT_INTL.match(local):
            return False
        safe = self._safe_chars
        for char in local:
            if char not in safe and char > "\x7f":
                if unicodedata.category(char)[0] not in "LNPS":
                    return False
                if len(safe) < 4096:
                    safe.add(char)
        return unicodedata.is_normalized("NFC", local)
