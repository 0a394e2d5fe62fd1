"""Email domains: email-validator's verdict on the part after the @, and what the drain's quickest
path needs to know about a domain, computed once per domain (signers share a few domains, plus a
long tail of their own).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import email_validator

from worker.pipeline.email_syntax import DOMAIN_MAX_LENGTH, domain_name

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
# A plain ASCII domain: the quick paths take only these.
PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9.\-]+\Z")
# Lowercase labels of letters, digits and inner hyphens, at most 63 each, at least two labels.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
USUAL_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}\Z")


class DomainFacts(NamedTuple):
    """What the quickest path needs about a plain ASCII domain that email-validator accepts."""

    unicode_domain: str
    ascii_domain: str
    longest: int  # bytes of the longest of the typed, normalized and ASCII forms
    canonical: str  # the domain part of canonical addresses
    gmail: bool


def domain_facts(domain: str) -> DomainFacts | str | None:
    """Facts about `domain` as typed, its refusal message, or None when it is not a plain ASCII
    domain (the address then takes the general path)."""
    if not PLAIN_DOMAIN.match(domain):
        return None
    checked = check_domain(domain)
    if isinstance(checked, str):
        return checked
    unicode_domain, ascii_domain = checked
    longest = max(len(domain), len(unicode_domain.encode()), len(ascii_domain))
    canonical = unicode_domain.lower().rstrip(".")
    gmail = canonical in GMAIL_DOMAINS
    return DomainFacts(unicode_domain, ascii_domain, longest, "gmail.com" if gmail else canonical, gmail)


def check_domain(domain: str) -> tuple[str, str] | str:
    """(domain, ASCII domain) as email-validator normalises them, or its reason for refusing."""
    usual = usual_domain(domain)
    if usual is not None:
        return usual, usual
    return domain_name(domain)


def usual_domain(domain: str) -> str | None:
    """email-validator's normalised domain for an ordinary ASCII domain name, or None for anything
    else, which email-validator then judges. Proven equal by tests/worker/pipeline/test_domains.py.

    Skips email-validator's Unicode (IDNA) machinery, the costly part, for the long tail of
    signers' own domains. For ASCII its steps reduce to: lowercase, the label rules (letters,
    digits, inner hyphens, 1-63 characters; no `--` at all, which also rules out Punycode), the
    length, a last character that is a letter (globally deliverable), no special-use name."""
    if len(domain) > DOMAIN_MAX_LENGTH or not domain.isascii():
        return None
    lowered = domain.lower()
    if (
        not email_validator.GLOBALLY_DELIVERABLE
        or email_validator.TEST_ENVIRONMENT
        or "--" in lowered
        or not lowered[-1:].isalpha()
        or not USUAL_DOMAIN.match(lowered)
    ):
        return None
    for special in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        if lowered == special or lowered.endswith("." + special):
            return None
    return lowered
