"""Everything the email checks borrow from email-validator's modules below its public API.

The quick paths in `emails` and `domains` repeat `validate_email`'s steps for the usual address
with these constants and functions. They are not part of email-validator's documented API, so an
upgrade may change them without notice: tests/worker/pipeline/test_email_syntax.py pins their
behaviour (and the quick paths') against `validate_email` on the project's email vectors, and no
other module may import them.
"""

from __future__ import annotations

import email_validator
from email_validator import EmailNotValidError, EmailSyntaxError
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOMAIN_MAX_LENGTH,
    DOT_ATOM_TEXT,
    DOT_ATOM_TEXT_INTL,
    EMAIL_MAX_LENGTH,
    LOCAL_PART_MAX_LENGTH,
)
from email_validator.syntax import validate_email_domain_name

__all__ = [
    "DOMAIN_MAX_LENGTH",
    "DOT_ATOM_TEXT",
    "DOT_ATOM_TEXT_INTL",
    "EMAIL_MAX_LENGTH",
    "LOCAL_PART_MAX_LENGTH",
    "RFC2142_NAMES",
    "domain_name",
    "undeliverable",
]

# Mailbox names that are case-insensitive (RFC 2142): email-validator lowercases them.
RFC2142_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def domain_name(domain: str) -> tuple[str, str] | str:
    """(domain, ASCII domain) as `validate_email` normalises the part after the @, or its reason
    for refusing it, under email-validator's module-wide settings."""
    try:
        info = validate_email_domain_name(
            domain,
            test_environment=email_validator.TEST_ENVIRONMENT,
            globally_deliverable=email_validator.GLOBALLY_DELIVERABLE,
        )
    except EmailSyntaxError as exc:
        return str(exc)
    return info["domain"], info["ascii_domain"]


def undeliverable(domain: str) -> str | None:
    """None if the ASCII `domain` can receive mail, else why not (email-validator's DNS check)."""
    from email_validator.deliverability import validate_email_deliverability  # imports dnspython

    try:
        validate_email_deliverability(domain, domain)
    except EmailNotValidError as exc:
        return str(exc)
    return None
