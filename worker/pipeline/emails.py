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
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    DOT_ATOM_TEXT_INTL,
    EMAIL_MAX_LENGTH,
    LOCAL_PART_MAX_LENGTH,
)
from email_validator.syntax import validate_email_local_part

from worker.pipeline.domains import GMAIL_DOMAINS, PLAIN_DOMAIN, check_domain, domain_facts

RFC2142_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


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
        self._domain = lru_cache(maxsize=cache_size)(check_domain)
        self._facts = lru_cache(maxsize=cache_size)(domain_facts)
        self._safe_chars: set[str] = set()  # non-ASCII characters seen in valid local parts

    def check(self, address: str) -> CheckedEmail:
        """Return the normalized and canonical address, or raise `EmailNotValidError`."""
        quick = self._quick(address)
        if quick is not None:
            local, domain, canonical = quick
            return CheckedEmail(f"{local}@{domain}", canonical)
        normalized, ascii_domain = self._fast(address) or self._full(address)
        if self._deliverability:
            problem = self._resolve(ascii_domain)
            if problem:
                raise EmailNotValidError(problem)
        return CheckedEmail(normalized, canonical_email(normalized))

    def canonical(self, address: str) -> str:
        """The canonical address of a valid `address`, or raise `EmailNotValidError`: `check`'s
        `canonical`, with no object built on the usual path (the drain calls this per signature)."""
        quick = self._quick(address)
        return quick[2] if quick is not None else self.check(address).canonical

    def _quick(self, address: str) -> tuple[str, str, str] | None:
        """(local part and domain of the normalized address, canonical address) for a
        dot-atom local part of at most 64 characters, ASCII or safe Unicode letters, numbers,
        punctuation and symbols in NFC, at a plain ASCII domain (nearly every address a form
        gets); None sends anything else to `_fast` / `_full`.

        Such a local part is valid as typed (`validate_email_local_part` returns it unchanged,
        at any `STRICT`; an ASCII one lowercased for RFC 2142 names), so only the cached domain
        facts and the lengths remain: `_fast`'s steps without the calls.
        tests/worker/pipeline/test_emails_fast.py checks both results against email-validator."""
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
        if self._deliverability:
            problem = self._resolve(facts.ascii_domain)
            if problem:
                raise EmailNotValidError(problem)
        untagged = folded.split("+", 1)[0] if "+" in folded else folded
        if untagged:
            folded = untagged
        if facts.gmail:
            folded = folded.replace(".", "") or folded
        return local, facts.unicode_domain, f"{folded}@{facts.canonical}"

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

    @staticmethod
    def _full(address: str) -> tuple[str, str]:
        result = validate_email(address, check_deliverability=False)
        return result.normalized, result.ascii_domain

    def _fast(self, address: str) -> tuple[str, str] | None:
        """`validate_email`'s answer for a dot-atom address with an ASCII domain, the domain
        checked once per domain (signers share a few); None sends anything else to
        `validate_email` itself.

        `validate_email`'s steps in its order, through the same email_validator.syntax
        functions: the local part (NFC input only, so normalising changes nothing; lowercased
        for RFC 2142 names), then the domain, then the lengths (beyond them: the full path, for
        its exact message). Proven equal by tests/worker/pipeline/test_emails_fast.py.
        """
        local, _, domain = address.partition("@")
        if not DOT_ATOM_TEXT_INTL.match(local) or not PLAIN_DOMAIN.match(domain):
            return None
        if not local.isascii() and not unicodedata.is_normalized("NFC", local):
            return None
        info = validate_email_local_part(
            local,
            allow_smtputf8=email_validator.ALLOW_SMTPUTF8,
            allow_empty_local=email_validator.ALLOW_EMPTY_LOCAL,
            quoted_local_part=False,
            strict=email_validator.STRICT,
        )
        local, ascii_local = info["local_part"], info["ascii_local_part"]
        if ascii_local is not None and ascii_local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
            local, ascii_local = local.lower(), ascii_local.lower()
        checked = self._domain(domain)
        if isinstance(checked, str):
            raise EmailSyntaxError(checked)
        unicode_domain, ascii_domain = checked
        normalized = f"{local}@{unicode_domain}"
        forms = (address, normalized, f"{ascii_local or local}@{ascii_domain}")
        if max(len(form.encode()) for form in forms) > EMAIL_MAX_LENGTH:
            return None
        return normalized, ascii_domain


def _resolve_domain(domain: str) -> str | None:
    """None if `domain` can receive mail, else why not (email-validator's own DNS check)."""
    from email_validator.deliverability import validate_email_deliverability

    try:
        validate_email_deliverability(domain, domain)
    except EmailNotValidError as exc:
        return str(exc)
    return None
