"""Content negotiation, telling browser form posts apart, plain words, CSRF tokens: pure."""

from __future__ import annotations

import pytest

from api_stub.pages import csrf
from api_stub.pages.form import is_browser_form, plain_message, prefers_html

CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (CHROME, True),
        ("text/html", True),
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/json, text/html", False),
        ("text/html;q=0.1, */*", False),
        ("text/html, application/json;q=0.5", True),
        ("text/html;q=bogus", False),
    ],
)
def test_html_only_when_the_client_ranks_it_above_json(accept: str | None, html: bool) -> None:
    assert prefers_html(accept) is html


def test_a_form_post_is_a_browsers_when_it_carries_a_browsers_marks() -> None:
    assert is_browser_form({"content-type": FORM, "origin": "http://x"})
    assert is_browser_form({"content-type": FORM, "sec-fetch-site": "same-origin"})
    assert is_browser_form({"content-type": FORM, "cookie": "a=b"})
    assert is_browser_form({"content-type": f"{FORM}; charset=utf-8", "accept": CHROME})


def test_api_clients_posting_json_or_a_bare_form_are_not_browsers() -> None:
    assert not is_browser_form({"content-type": FORM, "accept": "*/*"})
    assert not is_browser_form({"content-type": "application/json", "origin": "http://x", "cookie": "a"})


@pytest.mark.parametrize(
    ("field", "detail", "words"),
    [
        ("name", "is required", "Enter your name."),
        ("email", "must not be empty", "Enter your email address."),
        ("email", "must contain exactly one @", "Enter an email address like name@example.org."),
        (
            "postcode",
            "must be at most 16 characters",
            "Postcode must be at most 16 characters. Please shorten it.",
        ),
        (
            "name",
            "must not contain control characters",
            "Name contains characters we cannot store. Please retype it.",
        ),
        ("email", "The part after the @-sign is not valid.", "The part after the @-sign is not valid."),
    ],
)
def test_intake_errors_become_plain_sentences(field: str, detail: str, words: str) -> None:
    assert plain_message(field, detail) == words


NONCE = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
NOW = 1_790_000_000


def test_a_token_passes_for_its_own_nonce_within_its_age() -> None:
    token = csrf.make_token("k", NONCE, NOW)
    assert csrf.check_token("k", NONCE, token, NOW + 3600, max_age=86_400)


@pytest.mark.parametrize(
    ("secret", "nonce", "now"),
    [
        ("k", OTHER, NOW),
        ("other-key", NONCE, NOW),
        ("k", NONCE, NOW + 86_401),
        ("k", NONCE, NOW - 120),
        ("k", None, NOW),
    ],
)
def test_a_token_fails_for_another_nonce_key_or_age(secret: str, nonce: str | None, now: int) -> None:
    token = csrf.make_token("k", NONCE, NOW)
    assert not csrf.check_token(secret, nonce, token, now, max_age=86_400)


@pytest.mark.parametrize("token", [None, 12, "", "abc", f"{NOW}", f"{NOW}.", f"x{NOW}.00", "9" * 40 + ".0"])
def test_malformed_tokens_fail(token: object) -> None:
    assert not csrf.check_token("k", NONCE, token, NOW, max_age=86_400)


def test_origin_must_be_this_site_or_the_public_url_when_a_browser_names_one() -> None:
    public = "https://petitions.example.org/"
    assert csrf.same_origin(None, "127.0.0.1:8000", "http", public)
    assert csrf.same_origin("http://127.0.0.1:8000", "127.0.0.1:8000", "http", public)
    assert csrf.same_origin("https://petitions.example.org", "10.0.0.5:8000", "http", public)
    assert not csrf.same_origin("https://evil.example", "127.0.0.1:8000", "http", public)
    assert not csrf.same_origin("null", "127.0.0.1:8000", "http", public)
