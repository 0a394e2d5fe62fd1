"""What the email checks borrow from email-validator below its public API gives the answers of
its public `validate_email` on the project's email vectors: an upgrade that changes the borrowed
parts fails here instead of changing which signatures are accepted."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from email_validator.deliverability import validate_email_deliverability
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.worker.pipeline.email_vectors import ADDRESSES, DOMAINS
from worker.pipeline.domains import PLAIN_DOMAIN
from worker.pipeline.email_syntax import EMAIL_MAX_LENGTH, domain_name
from worker.pipeline.emails import EmailChecker, canonical_email

ROOT = Path(__file__).resolve().parents[3]


def answer(address: str) -> tuple[str, str, str]:
    """email-validator's public verdict: ("ok", normalized, canonical) or ("refused", why, "")."""
    try:
        normalized = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        return ("refused", str(exc), "")
    return ("ok", normalized, canonical_email(normalized))


def ours(checker: EmailChecker, address: str) -> tuple[str, str, str]:
    try:
        checked = checker.check(address)
    except EmailNotValidError as exc:
        return ("refused", str(exc), "")
    return ("ok", checked.normalized, checked.canonical)


@pytest.mark.parametrize("address", ADDRESSES)
def test_every_project_address_gets_validate_emails_answer(address: str) -> None:
    checker = EmailChecker()
    for _ in range(2):  # fresh, then from the per-domain cache
        assert ours(checker, address) == answer(address)


plain_domains = st.one_of(
    st.sampled_from([d for d in DOMAINS if PLAIN_DOMAIN.match(d)]),
    st.from_regex(r"[A-Za-z0-9.\-]{1,70}", fullmatch=True),
    st.from_regex(r"([a-zA-Z0-9-]{1,64}\.){1,4}(com|org|local|test|invalid|arpa|x1|xn--zz)", fullmatch=True),
)


@settings(max_examples=2000, deadline=None)
@given(plain_domains)
@example("a" * 63 + ".com")
@example(("a" * 60 + ".") * 4 + "com")
@example("Example.ORG")
@example("xn--exmple-cua.com")
def test_the_borrowed_domain_check_gives_validate_emails_domain(domain: str) -> None:
    # Given a domain the quick path asks about (plain ASCII), and a local part that is always valid
    borrowed = domain_name(domain)
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        # Then a refused domain is refused with the same words, and an accepted one only for the
        # length of the whole address, which the quick path checks itself
        if isinstance(borrowed, str):
            assert borrowed == str(exc)
        else:
            assert len(f"a@{borrowed[1]}") > EMAIL_MAX_LENGTH or len(f"a@{domain}") > EMAIL_MAX_LENGTH
        return
    assert borrowed == (result.domain, result.ascii_domain)


def test_the_borrowed_dns_check_takes_the_arguments_we_pass() -> None:
    parameters = list(inspect.signature(validate_email_deliverability).parameters)
    assert parameters[:2] == ["domain", "domain_i18n"]


def test_only_email_syntax_imports_email_validators_inner_modules() -> None:
    inner = re.compile(r"email_validator\.(syntax|rfc_constants|deliverability)\b")
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("worker", "api_stub")
        for path in (ROOT / package).rglob("*.py")
        if inner.search(path.read_text()) and path.name != "email_syntax.py"
    ]
    assert offenders == []
