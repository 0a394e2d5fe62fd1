"""The fast path of `EmailChecker` gives exactly `validate_email`'s accept/reject and result."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings

from tests.worker.pipeline.email_vectors import domains, local_parts
from worker.pipeline.emails import EmailChecker, canonical_email


def outcome(check: object, address: str) -> tuple[str, str]:
    try:
        return ("ok", check(address))  # type: ignore[operator]
    except EmailNotValidError as exc:
        return ("refused", str(exc))


def reference(address: str) -> str:
    return validate_email(address, check_deliverability=False).normalized


@settings(max_examples=3000, deadline=None)
@given(local_parts, domains)
@example("a" * 64, "a" * 63 + ".com")
@example("x", ("a" * 60 + ".") * 4 + "com")
@example("PostMaster", "Example.org")
@example("e\u0301", "example.org")
@example("é" * 100, ("a" * 60 + ".") * 2 + "com")
def test_fast_path_matches_validate_email(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    checker = EmailChecker()
    # Twice: the second answer comes from the per-domain cache.
    for _ in range(2):
        ours = outcome(lambda a: checker.check(a).normalized, address)
        assert ours == outcome(reference, address)


@pytest.mark.parametrize("address", ["Ann.Lee+x@GMail.com", "bob@xn--exmple-cua.com", "chloé.1@gmail.com"])
def test_canonical_form_follows_the_normalized_address(address: str) -> None:
    checked = EmailChecker().check(address)
    assert checked.normalized == reference(address)
    assert checked.canonical == canonical_email(reference(address))


@settings(max_examples=3000, deadline=None)
@given(local_parts, domains)
@example("PostMaster", "Example.org")
@example("Ann.Lee+x", "GoogleMail.com")
@example("a" * 64, "a" * 63 + ".com")
def test_the_canonical_address_matches_the_one_from_validate_email(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    checker = EmailChecker()
    expected = outcome(lambda a: canonical_email(reference(a)), address)
    for _ in range(2):  # fresh, then from the per-domain cache
        assert outcome(checker.canonical, address) == expected
        assert outcome(lambda a: checker.check(a).canonical, address) == expected
