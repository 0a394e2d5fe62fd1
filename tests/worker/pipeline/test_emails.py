from __future__ import annotations

import pytest
from email_validator import EmailNotValidError
from hypothesis import given, reject
from hypothesis import strategies as st

from worker.pipeline.emails import EmailChecker, canonical_email


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("Clara.Long@Example.org", "clara.long@example.org"),
        ("clara+petitions@example.org", "clara@example.org"),
        ("C.L.A.R.A@gmail.com", "clara@gmail.com"),
        ("clara+x@googlemail.com", "clara@gmail.com"),
        ("CL.ara+tag+more@GoogleMail.com", "clara@gmail.com"),
        ("+only@example.org", "+only@example.org"),
        ("josé@exämple.com", "josé@exämple.com"),
    ],
)
def test_canonical_email_folds_case_tags_and_gmail_dots(typed: str, canonical: str) -> None:
    checked = EmailChecker().check(typed)
    assert checked.canonical == canonical


def test_the_address_as_typed_is_kept_apart_from_the_canonical_one() -> None:
    checked = EmailChecker().check("Clara.Long+x@Gmail.com")
    assert checked.normalized == "Clara.Long+x@gmail.com"
    assert checked.canonical == "claralong@gmail.com"


@pytest.mark.parametrize("bad", ["no-at-sign", "a@b", "a@@b.com", "a b@c.com", "@example.org", "x@-.com"])
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(EmailNotValidError):
        EmailChecker().check(bad)


def test_deliverability_lookups_are_cached_per_domain() -> None:
    asked: list[str] = []

    def resolve(domain: str) -> str | None:
        asked.append(domain)
        return None if domain == "example.org" else "no mail server"

    checker = EmailChecker(deliverability=True, resolve=resolve)
    for n in range(50):
        checker.check(f"person{n}@example.org")
    with pytest.raises(EmailNotValidError):
        checker.check("someone@nomail.example")
    assert asked == ["example.org", "nomail.example"]


local = st.text(alphabet=st.sampled_from("abcXYZ.+_-019"), min_size=1, max_size=20)
domain = st.sampled_from(["gmail.com", "googlemail.com", "Example.ORG", "uni.ac.uk", "exämple.com"])


@given(local, domain)
def test_canonicalisation_is_idempotent_and_case_insensitive(user: str, host: str) -> None:
    address = f"{user}@{host}"
    once = canonical_email(address)
    assert canonical_email(once) == once
    assert canonical_email(address.upper()) == canonical_email(address.lower())


def ascii_swapcase(text: str) -> str:
    return "".join(ch.swapcase() if ch.isascii() else ch for ch in text)


@given(st.text())
def test_canonicalisation_of_any_text_is_idempotent_and_never_raises(text: str) -> None:
    once = canonical_email(text)
    assert canonical_email(once) == once


@given(st.text(), st.text())
def test_canonicalisation_ignores_ascii_case_anywhere(user: str, host: str) -> None:
    address = f"{user}@{host}"
    assert canonical_email(ascii_swapcase(address)) == canonical_email(address)


@given(st.emails())
def test_a_valid_address_canonicalises_the_same_however_it_is_cased_or_tagged(address: str) -> None:
    checker = EmailChecker()
    try:
        checked = checker.check(address)
    except EmailNotValidError:
        # hypothesis's addresses are RFC-valid; email-validator is stricter about some. Rejected,
        # not passed: a checker that refused most valid addresses fails hypothesis's health check.
        reject()
    local, _, domain = checked.normalized.rpartition("@")
    variants = [address.upper(), address.lower()]
    if not local.startswith("+"):  # a local part that is all tag is kept whole (+only@...)
        variants.append(f"{local}+petition@{domain}")
    for variant in variants:
        assert checker.check(variant).canonical == checked.canonical
    assert canonical_email(checked.canonical) == checked.canonical
