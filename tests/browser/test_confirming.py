"""Email confirmation in headless Chromium: sign, see "Check your inbox", open the emailed link,
press the button, see the thank-you, and watch the count rise once the worker has confirmed it.
The intake under Granian, a real Celery worker, an SMTP server in the test."""

from __future__ import annotations

import re

import pytest

from tests.browser.driver import Page
from tests.conftest import PetitionFactory
from tests.helpers import wait_for
from tests.worker.reminders.conftest import Recorder, mailbox, smtp  # noqa: F401
from worker.reminders.confirmations import send_confirmations
from worker.runtime import Runtime
from worker.settings import Settings

pytestmark = pytest.mark.browser


def test_a_signer_confirms_by_the_emailed_link_and_sees_the_count_rise(
    page: Page,
    site: str,
    worker: None,
    make_petition: PetitionFactory,
    settings: Settings,
    rt: Runtime,
    smtp: tuple[Recorder, int],  # noqa: F811
) -> None:
    mail, port = smtp
    petition = make_petition(confirm_email=True, body="Keep the library open.", target="The Council")
    url = f"{site}/petitions/{petition.id}"
    assert page.goto(url) == 200
    assert (
        page.text(".target") == "To: The Council" and page.text(".petition-text") == "Keep the library open."
    )
    page.fill("#name", "Ann Lee")
    page.fill("#email", "ann.lee@example.org")
    page.click("#sign-button")
    page.wait_visible("#thanks")
    assert "Check your inbox" in page.text("#thanks")
    page.screenshot("confirm-01-check-your-inbox")
    # The worker stores it pending; the mail run sends the email
    wait_for(lambda: rt.registry.get(petition.id).awaiting_confirmation == 1, timeout=45, interval=0.3)  # type: ignore[union-attr]
    mail_settings = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}", "public_url": site})
    assert send_confirmations(mail_settings, rt.registry).sent == 1
    [link] = re.findall(
        re.escape(site) + r"/confirm/[A-Za-z0-9._-]+", mail.to("ann.lee@example.org")[0].text()
    )
    # Opening the link shows a button; the count has not moved
    assert page.goto(link) == 200
    assert page.text("h1") == "Confirm your signature"
    assert rt.registry.get(petition.id).signature_count == 1  # type: ignore[union-attr]
    page.screenshot("confirm-02-the-button")
    page.click("#confirm-button")
    wait_for(lambda: "counted in a moment" in page.text("h1"), timeout=15, interval=0.2)
    page.screenshot("confirm-03-thank-you")
    # And the worker counts it
    wait_for(lambda: rt.registry.get(petition.id).signature_count == 2, timeout=45, interval=0.3)  # type: ignore[union-attr]
    assert page.goto(url) == 200
    assert page.text(".count") == "2 signatures"
    page.screenshot("confirm-04-counted")
