"""Reminder fixtures: a real SMTP server (aiosmtpd) in the test process, settings pointing at it,
and a way to add signatures with chosen times and opt-in."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from worker.pipeline.emails import canonical_email
from worker.reminders.run import RunReport, send_due
from worker.reminders.transport import Transport
from worker.runtime import Runtime
from worker.settings import Settings

PUBLIC_URL = "https://petitions.example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.content, policy=default)
        assert isinstance(msg, EmailMessage)
        return msg

    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]


@dataclass
class Recorder:
    """An SMTP handler that keeps what it accepted, and answers RCPT as told per address."""

    received: list[Received] = field(default_factory=list)
    rcpt_answers: dict[str, list[str]] = field(default_factory=dict)  # address -> answers, used in order
    before_data: Callable[[], None] | None = None  # runs (in a thread) before DATA is accepted

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        answers = self.rcpt_answers.get(address)
        if answers:
            return answers.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.before_data is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.before_data)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 2.0.0 accepted"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]

    def recipients(self) -> list[str]:
        return sorted(a for r in self.received for a in r.rcpt_tos)


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield recorder, port
    controller.stop()


@pytest.fixture
def mailbox(smtp: tuple[Recorder, int]) -> Recorder:
    return smtp[0]


@pytest.fixture
def rsettings(settings: Settings, smtp: tuple[Recorder, int]) -> Settings:
    """Settings for reminders: our SMTP server, one recent signature qualifies, no pacing delay."""
    return settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{smtp[1]}",
            "public_url": PUBLIC_URL,
            "reminder_min_recent": 1,
            "reminder_rate": 10_000.0,
            "reminder_from": "Petitions <reminders@petitions.example.org>",
        }
    )


Signer = Callable[..., None]


@pytest.fixture
def sign(db: psycopg.Connection[tuple[object, ...]]) -> Signer:
    """Add a persisted signature (and count it, as the drain would) at a chosen age."""

    def add(
        petition_id: int,
        address: str,
        name: str = "Ann Lee",
        *,
        opt_in: bool = True,
        hours_ago: float = 1.0,
        state: str = "validated",
    ) -> None:
        db.execute(
            """INSERT INTO signatures (petition_id, receipt, email, canonical_email, name, opt_in, state,
                                       accepted_at)
               VALUES (%s, gen_random_uuid()::text, %s, %s, %s, %s, %s,
                       now() - make_interval(secs => %s))""",
            (petition_id, address, canonical_email(address), name, opt_in, state, hours_ago * 3600),
        )
        if state == "validated":
            db.execute(
                "UPDATE petitions SET signature_count = signature_count + 1 WHERE id = %s", [petition_id]
            )

    return add


Runner = Callable[..., RunReport]


@pytest.fixture
def run(rsettings: Settings, rt: Runtime) -> Runner:
    """One reminders run, as the Celery task does it, with optional setting overrides."""

    def go(transport: Transport | None = None, **overrides: Any) -> RunReport:
        return send_due(rsettings.model_copy(update=overrides), rt.redis, transport=transport)

    return go


def statuses(db: psycopg.Connection[tuple[object, ...]]) -> dict[tuple[str, int], str]:
    rows = db.execute("SELECT canonical_email, petition_id, status FROM reminder_deliveries").fetchall()
    return {(str(e), int(p)): str(s) for e, p, s in rows}  # type: ignore[call-overload]
