"""Signing in headless Chromium, the way a signer meets the page: the intake served by Granian on
localhost, a real Celery worker counting, PostgreSQL and Redis behind. Screenshots of each state
go to test-artifacts/browser/.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2
import psycopg
import pytest

from tests.browser.driver import Browser, Page
from tests.conftest import PetitionFactory
from tests.helpers import backlog, wait_for
from worker.drain.petitions import set_status
from worker.observability.stats import gather
from worker.runtime import Runtime

pytestmark = pytest.mark.browser

SEED_TITLE = "Tell Massachusetts Governor Deval Patrick: Don't Jump on the Anti-Immigrant Bandwagon"
Db = psycopg.Connection[tuple[object, ...]]


def count_on(page: Page) -> int:
    return int(page.text("#signature-count").replace(",", ""))


def fill_in(page: Page, name: str, email: str, postcode: str = "", country: str = "") -> None:
    page.fill("#name", name)
    page.fill("#email", email)
    page.fill("#postcode", postcode)
    page.fill("#country", country)


def stored(db: Db, petition_id: int) -> list[tuple[object, ...]]:
    return db.execute(
        """SELECT email, name, postcode, country, opt_in, state FROM signatures
           WHERE petition_id = %s AND receipt NOT LIKE 'starter-%%' ORDER BY accepted_at""",
        [petition_id],
    ).fetchall()


def duplicates(db: Db, petition_id: int) -> int:
    row = db.execute(
        "SELECT count(*) FROM rejected_signatures WHERE petition_id = %s AND reason = 'duplicate'",
        [petition_id],
    ).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def signature_count(db: Db, petition_id: int) -> int:
    """The petition's count in PostgreSQL, written in the same transaction as its batch's rows."""
    row = db.execute("SELECT signature_count FROM petitions WHERE id = %s", [petition_id]).fetchone()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def every_batch_published(rt: Runtime) -> bool:
    """The worker has finished every submission the intake accepted, its live count published
    included: a batch's running totals are added after its counts are published to the page's
    registry, so once they account for every accepted submission no publish is still to come."""
    t = gather(rt.redis, rt.keys, time.time())
    handled = t.persisted + t.uncounted + t.duplicates + sum(t.rejected.values()) + t.dead_lettered
    return handled == t.accepted


def only_this_site_and_no_errors(page: Page, site: str) -> None:
    seen = page.seen()
    assert seen["errors"] == []
    assert seen["requests"] and all(r["url"].startswith(site + "/") for r in seen["requests"])


def test_a_signer_fills_the_form_sees_the_thank_you_and_watches_the_count_rise(
    page: Page, site: str, worker: None, make_petition: PetitionFactory, db: Db
) -> None:
    petition = make_petition(title=SEED_TITLE, starter="Clara LONG")
    url = f"{site}/petitions/{petition.id}"
    # Given the petition page
    assert page.goto(url) == 200
    assert page.title() == SEED_TITLE and page.text("h1") == SEED_TITLE
    assert page.text(".starter") == "Started by Clara LONG"
    assert page.text("#nudge-heading") == "Today: Clara is counting on you"
    assert page.text(".nudge p") == (
        f"Clara LONG needs your help with “{SEED_TITLE}”. Be the first to join Clara today."
    )
    assert page.text(".count") == "1 signature" and not page.checked("#opt_in")
    page.screenshot("01-petition-open")
    # When the signer fills the form and signs
    fill_in(page, "Ann Lee", "ann.lee@example.org", "SW1A 1AA", "United Kingdom")
    page.check("#opt_in")
    page.screenshot("02-form-filled")
    page.click("#sign-button")
    # Then the thank-you replaces the form, on the same page, and has the focus
    page.wait_visible("#thanks")
    assert "Your signature is being counted." in page.text("#thanks")
    assert not page.visible("#sign-form") and page.focused_id() == "thanks"
    assert page.url == url
    page.screenshot("03-thank-you-in-place")
    # And once the worker's batch is committed the count on the page rises by itself
    wait_for(lambda: count_on(page) == 2, timeout=45, interval=0.5)
    assert page.text(".count") == "2 signatures"
    assert page.text("#call-to-action") == "Join Clara and 1 other supporter today."
    page.screenshot("04-count-risen")
    assert stored(db, petition.id) == [
        ("ann.lee@example.org", "Ann Lee", "SW1A 1AA", "United Kingdom", True, "validated")
    ]
    only_this_site_and_no_errors(page, site)


def test_signing_again_with_the_same_email_in_another_case_leaves_the_count_unchanged(
    browser: Browser, site: str, worker: None, make_petition: PetitionFactory, db: Db, rt: Runtime
) -> None:
    petition = make_petition()
    url = f"{site}/petitions/{petition.id}"
    first = browser.open()
    first.goto(url)
    fill_in(first, "Ann Lee", "ann.lee@example.org")
    first.click("#sign-button")
    wait_for(lambda: count_on(first) == 2, timeout=45, interval=0.5)
    # Another visit (fresh browser context), the same address typed in other letter case
    again = browser.open()
    again.goto(url)
    assert count_on(again) == 2
    fill_in(again, "Ann Lee", "Ann.Lee@EXAMPLE.org")
    again.click("#sign-button")
    again.wait_visible("#thanks")
    # The worker records it as a duplicate; the count does not move, in PostgreSQL (the same
    # transaction as the duplicate), on the page, or after a reload once the batch is published
    wait_for(lambda: duplicates(db, petition.id) == 1, timeout=45, interval=0.2)
    assert signature_count(db, petition.id) == 2
    wait_for(lambda: every_batch_published(rt), timeout=45, interval=0.2)
    assert count_on(again) == 2
    again.reload()
    assert count_on(again) == 2 and "Join Clara and 1 other supporter today." in again.text(".nudge")
    again.screenshot("05-same-email-count-unchanged")
    assert len(stored(db, petition.id)) == 1


def test_a_bot_filling_the_hidden_field_sees_the_same_thank_you_and_is_not_counted(
    page: Page, site: str, worker: None, make_petition: PetitionFactory, db: Db, rt: Runtime
) -> None:
    petition = make_petition()
    page.goto(f"{site}/petitions/{petition.id}")
    # Off-screen for people (and hidden from screen readers), but in the form for bots
    assert page.evaluate("document.getElementById('comment').getBoundingClientRect().right") <= 0
    fill_in(page, "Bot", "bot@example.org")
    page.evaluate("document.getElementById('comment').value = 'cheap watches'")
    page.click("#sign-button")
    page.wait_visible("#thanks")
    wait_for(lambda: len(stored(db, petition.id)) == 1, timeout=45, interval=0.2)
    assert stored(db, petition.id)[0][-1] == "fraudulent"
    assert signature_count(db, petition.id) == 1  # the same transaction as the row
    wait_for(lambda: every_batch_published(rt), timeout=45, interval=0.2)
    page.reload()
    assert count_on(page) == 1


def test_an_invalid_email_shows_the_message_by_the_field_and_keeps_the_typing(
    page: Page, site: str, make_petition: PetitionFactory, rt: Runtime
) -> None:
    petition = make_petition()
    page.goto(f"{site}/petitions/{petition.id}")
    fill_in(page, "Ann Lee", "ann.example.org", "SW1A 1AA")
    page.check("#opt_in")
    page.click("#sign-button")
    wait_for(lambda: page.text("#email-error") != "", timeout=10)
    # The message sits by the email field, is its description, and the field has the focus
    assert page.text("#email-error") == "Enter an email address like name@example.org."
    assert page.attribute("#email", "aria-invalid") == "true"
    assert page.attribute("#email", "aria-describedby") == "email-error"
    assert page.focused_id() == "email"
    assert page.text("#form-status") == "Please correct the fields marked below."
    assert page.text("#name-error") == ""
    # The typing is kept and nothing was queued
    assert (page.value("#name"), page.value("#email"), page.value("#postcode")) == (
        "Ann Lee",
        "ann.example.org",
        "SW1A 1AA",
    )
    assert page.checked("#opt_in") and not page.visible("#thanks")
    page.screenshot("06-invalid-email")
    assert backlog(rt) == (0, 0)
    # Corrected, it goes through and the message goes away
    page.fill("#email", "ann@example.org")
    page.click("#sign-button")
    page.wait_visible("#thanks")
    assert page.evaluate("document.getElementById('email-error').textContent") == ""
    assert backlog(rt)[0] == 1


def test_a_petition_closed_while_the_page_was_open_says_so_in_words(
    page: Page, site: str, make_petition: PetitionFactory, rt: Runtime
) -> None:
    petition = make_petition()
    page.goto(f"{site}/petitions/{petition.id}")
    set_status(rt.engine, rt.registry, petition.id, "closed")
    fill_in(page, "Ann Lee", "ann@example.org")
    page.click("#sign-button")
    wait_for(lambda: page.text("#form-status") != "", timeout=10)
    assert page.text("#form-status") == "This petition has closed, so your signature could not be added."
    assert page.value("#email") == "ann@example.org" and not page.visible("#thanks")
    page.screenshot("07-closed-while-open")


def test_a_victory_page_shows_the_victory_and_no_form(
    page: Page, site: str, make_petition: PetitionFactory, rt: Runtime, drain: Callable[[], int]
) -> None:
    petition = make_petition(title=SEED_TITLE)
    with httpx2.Client(base_url=site) as api:
        for n in range(262):
            api.post(f"/petitions/{petition.id}/signatures", json={"email": f"s{n}@example.org", "name": "S"})
    drain()
    set_status(rt.engine, rt.registry, petition.id, "victory")
    assert page.goto(f"{site}/petitions/{petition.id}") == 200
    assert page.text(".badge") == "Confirmed victory"
    assert page.text(".lead") == "This petition made change with 263 supporters!"
    assert page.count("form") == 0 and page.count("input") == 0
    page.screenshot("08-victory")


def test_without_javascript_the_form_posts_and_lands_on_the_thank_you_page(
    page_without_js: Page, site: str, worker: None, make_petition: PetitionFactory, db: Db
) -> None:
    page = page_without_js
    petition = make_petition()
    url = f"{site}/petitions/{petition.id}"
    page.goto(url)
    # A mistake first: the form comes back (422) with the message and the typing
    fill_in(page, "Ann Lee", "ann@", "SW1A 1AA")
    status, landed = page.submit()
    assert (status, landed) == (422, f"{url}/signatures")
    assert page.text("#email-error") != "" and page.value("#name") == "Ann Lee"
    assert page.value("#postcode") == "SW1A 1AA" and page.focused_id() == "email"
    assert page.title().startswith("Error: ")
    page.screenshot("09-no-js-error")
    # Corrected: 303 to the thank-you page
    page.fill("#email", "ann@example.org")
    status, landed = page.submit()
    assert (status, landed) == (303, f"{url}/thanks")
    assert "is being counted" in page.text("main")
    page.screenshot("10-no-js-thank-you")
    # The worker counts it; the petition page shows it
    wait_for(lambda: len(stored(db, petition.id)) == 1, timeout=45, interval=0.2)
    wait_for(lambda: page.goto(url) == 200 and count_on(page) == 2, timeout=10, interval=0.2)
    only_this_site_and_no_errors(page, site)


def test_keyboard_focus_follows_the_form_and_skips_the_honeypot(
    page: Page, site: str, make_petition: PetitionFactory
) -> None:
    petition = make_petition()
    page.goto(f"{site}/petitions/{petition.id}")
    page.click("#name")
    order = [page.focused_id()]
    for _ in range(5):
        page.press("Tab")
        order.append(page.focused_id())
    assert order == ["name", "email", "postcode", "country", "opt_in", "sign-button"]
    labels = page.evaluate(
        "['name', 'email', 'postcode', 'country', 'opt_in']"
        ".map(id => document.getElementById(id).labels[0].innerText)"
    )
    assert labels == [
        "Your name",
        "Email address",
        "Postcode (optional)",
        "Country (optional)",
        "Email me about other petitions",
    ]


def test_the_page_loads_nothing_from_elsewhere_and_weighs_under_50_kb(
    page: Page, site: str, make_petition: PetitionFactory
) -> None:
    petition = make_petition(title=SEED_TITLE)
    page.goto(f"{site}/petitions/{petition.id}")
    weight = page.evaluate(
        """performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
           .reduce((sum, entry) => sum + entry.encodedBodySize, 0)"""
    )
    resources = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert sorted(resources) == [f"{site}/static/petition.css", f"{site}/static/petition.js"]
    assert 0 < weight < 50 * 1024, weight
    only_this_site_and_no_errors(page, site)
