"""Confirmation fixtures: the intake in-process, an SMTP server (the reminders' recorder),
settings pointing at it, and a confirmation-mode petition."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from api_stub.app import create_app
from tests.conftest import PetitionFactory
from tests.worker.reminders.conftest import PUBLIC_URL, Recorder, mailbox, smtp  # noqa: F401
from worker.drain.registry import PetitionCard
from worker.reminders.confirmations import ConfirmReport, send_confirmations
from worker.runtime import Runtime
from worker.settings import Settings

LINK = re.compile(re.escape(PUBLIC_URL) + r"(/confirm/[A-Za-z0-9._-]+)")


@pytest.fixture
def csettings(settings: Settings, smtp: tuple[Recorder, int]) -> Settings:  # noqa: F811
    return settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{smtp[1]}",
            "public_url": PUBLIC_URL,
            "reminder_from": "Petitions <confirm@petitions.example.org>",
        }
    )


@pytest.fixture
def client(csettings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(csettings), base_url=PUBLIC_URL) as client:
        yield client


@pytest.fixture
def confirm_petition(make_petition: PetitionFactory) -> PetitionCard:
    return make_petition(confirm_email=True, starter_email="clara@example.org")


@pytest.fixture
def send(csettings: Settings, rt: Runtime) -> Callable[..., ConfirmReport]:
    """One confirmation-emails run, as the Celery task does it."""
    return lambda **overrides: send_confirmations(csettings.model_copy(update=overrides), rt.registry)


def link_path(mail: Recorder, address: str, index: int = -1) -> str:
    """The confirmation link's path in the `index`th email to `address` (the same in text and HTML)."""
    received = mail.to(address)[index]
    text_links = LINK.findall(received.text())
    html_links = LINK.findall(received.html())
    assert len(set(text_links)) == 1 and set(text_links) == set(html_links), (text_links, html_links)
    return str(text_links[0])
