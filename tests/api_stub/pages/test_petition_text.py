"""The petition's own words on its page: rendered safely, with its decision maker, counts with
thousands separators, a nudge that reads well when the starter is the only signer, and the
confirmation-mode thank-you."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api_stub.app import create_app
from api_stub.pages.text import render_text
from tests.api_stub.pages.test_pages import PAGE, sign_in_browser, text_of
from tests.conftest import PetitionFactory
from worker.ops.demo.data import SEED_BODY, SEED_TARGET
from worker.pipeline.wording import call_to_action
from worker.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_plain_paragraphs_and_a_little_markdown_become_safe_html() -> None:
    html = render_text("First line\nsame paragraph.\n\n- one\n- **two**\n\nAn *emphasis*.")
    assert html == (
        "<p>First line<br>same paragraph.</p>\n<ul><li>one</li><li><strong>two</strong></li></ul>\n"
        "<p>An <em>emphasis</em>.</p>"
    )


def test_no_markup_from_the_text_reaches_the_page() -> None:
    hostile = (
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)> [a](javascript:alert(1)) **<b>x</b>**"
    )
    html = str(render_text(hostile))
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "javascript:alert(1)" in html  # shown as text, never a link
    assert "<a " not in html


@given(st.text())
def test_any_text_renders_without_a_tag_of_its_own(text: str) -> None:
    html = str(render_text(text))
    stripped = html
    for tag in (
        "<p>",
        "</p>",
        "<br>",
        "<ul>",
        "</ul>",
        "<li>",
        "</li>",
        "<strong>",
        "</strong>",
        "<em>",
        "</em>",
    ):
        stripped = stripped.replace(tag, "")
    assert "<" not in stripped and ">" not in stripped


def test_the_page_shows_the_petitions_words_and_its_decision_maker_escaped(
    client: TestClient, make_petition: PetitionFactory
) -> None:
    petition = make_petition(body=SEED_BODY + "\n\n<script>alert(1)</script>", target=SEED_TARGET)
    page = client.get(f"/petitions/{petition.id}", headers=PAGE).text
    assert "To: Massachusetts Governor Deval Patrick" in text_of(page)
    assert "<li>keep state services open" in page and "<strong>publicly</strong>" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_counts_have_thousands_separators_and_the_only_signer_gets_a_sensible_nudge(
    client: TestClient, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    text = text_of(client.get(f"/petitions/{petition.id}", headers=PAGE).text)
    assert "1 signature" in text and "Be the first to join Clara today." in text
    assert "0 supporters" not in text
    assert call_to_action("Clara LONG", "open", 17_600) == "Join Clara and 17,599 supporters today."
    assert call_to_action("Clara LONG", "open", 2) == "Join Clara and 1 other supporter today."
    assert (
        call_to_action("Clara LONG", "victory", 17_600) == "This petition made change with 17,600 supporters!"
    )
    assert call_to_action("Clara LONG", "closed", 1) == "This petition is closed. 1 person signed it."


def test_in_confirmation_mode_the_thank_you_says_to_check_the_inbox(
    client: TestClient, make_petition: PetitionFactory
) -> None:
    petition = make_petition(confirm_email=True)
    page = client.get(f"/petitions/{petition.id}", headers=PAGE).text
    assert "Check your inbox" in page  # the script's thank-you, shown after a background post
    answer = sign_in_browser(client, petition.id, name="Ann", email="ann@example.org")
    assert answer.status_code == 303
    thanks = text_of(client.get(answer.headers["location"], headers=PAGE).text)
    assert "Check your inbox" in thanks and "counted only once you do" in thanks
    plain = make_petition(title="Plain")
    assert "Check your inbox" not in client.get(f"/petitions/{plain.id}/thanks", headers=PAGE).text
