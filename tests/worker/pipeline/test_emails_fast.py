"""The fast path of `EmailChecker` gives exactly `validate_email`'s accept/reject and result."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.pipeline.emails import EmailChecker, canonical_email

LOCAL_CHARS = "abcXYZ019.+-_!#$%&'*/=?^`{|}~\"\\ @<>()[],;:é\u00a0\x00ßü中\u0301\u200b\ufeff\u202e\U0001f600"
DOMAINS = [
    "gmail.com",
    "GMAIL.COM",
    "example.org",
    "a.b",
    "localhost",
    "-x.com",
    "x-.com",
    "x..com",
    "x.com.",
    ".x.com",
    "xn--exmple-cua.com",
    "xn--zz.com",
    "exämple.com",
    "[127.0.0.1]",
    "123.com",
    "x.invalid",
    "x.local",
    "a" * 64 + ".com",
    "a" * 63 + ".com",
    ("a" * 60 + ".") * 4 + "com",
    "x_y.com",
    "x.c",
    "example.test",
    "",
    "x.com@y.com",
]
local_parts = st.one_of(
    st.text(alphabet=LOCAL_CHARS, min_size=0, max_size=70),
    st.from_regex(r"[a-zA-Z0-9]{1,20}([.+][a-zA-Z0-9]{1,20}){0,3}", fullmatch=True),
    st.sampled_from(["postmaster", "Abuse", "HOSTMASTER", "a" * 64, "a" * 65, "a" * 200, "é" * 120]),
    st.from_regex(r"[a-zé中ü]{1,10}(\.[a-zß]{1,5})?", fullmatch=True),
)
domains = st.one_of(st.sampled_from(DOMAINS), st.text(alphabet="abcXY09.-", min_size=0, max_size=30))


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
