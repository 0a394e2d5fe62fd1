"""SMTP with STARTTLS, implicit TLS and AUTH; the file transport; the local outbox sink."""

from __future__ import annotations

import email
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import PetitionFactory
from tests.worker.reminders.conftest import Recorder, Runner, Signer, free_port
from worker.reminders.message import Letterhead, Reminder, render
from worker.reminders.outbox import local_sink_address, serve_outbox
from worker.reminders.transport import (
    FileTransport,
    PermanentFailure,
    PlainTextCredentials,
    ServerUnavailable,
    SmtpTransport,
    TemporaryFailure,
    classify,
    transport_for,
)

USER, PASSWORD = "mailer", "p@ss:word"


def a_message() -> Any:
    reminder = Reminder(1, "ann@example.org", "ann@example.org", "Ann", 3, "Title", "Clara LONG", 10)
    return render(reminder, Letterhead("P <r@example.org>", "http://x", "k"), "d")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), for a TLS server in this process."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok)


@pytest.fixture(params=["starttls", "smtps"])
def tls_server(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[tuple[Recorder, str, int]]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*certificate)
    recorder, port = Recorder(), free_port()
    tls: dict[str, Any] = (
        {"tls_context": server_context, "require_starttls": True}
        if request.param == "starttls"
        # aiosmtpd only counts STARTTLS as TLS: on an implicit-TLS port AUTH is offered this way
        else {"ssl_context": server_context, "auth_require_tls": False, "auth_required": False}
    )
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        **{"auth_required": True, **tls},
    )
    controller.start()
    yield recorder, request.param, port
    controller.stop()


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def test_tls_and_auth_from_the_url_deliver_the_message(
    tls_server: tuple[Recorder, str, int], certificate: tuple[Path, Path]
) -> None:
    recorder, mode, port = tls_server
    scheme = "smtps" if mode == "smtps" else "smtp"
    url = f"{scheme}://{USER}:p%40ss%3Aword@127.0.0.1:{port}"
    transport = SmtpTransport(url, starttls=mode == "starttls", context=client_context(certificate))
    transport.send(a_message(), "P <r@example.org>", "ann@example.org")
    transport.close()
    assert recorder.recipients() == ["ann@example.org"]


def test_a_wrong_password_stops_the_run_rather_than_failing_deliveries(
    tls_server: tuple[Recorder, str, int], certificate: tuple[Path, Path]
) -> None:
    recorder, mode, port = tls_server
    scheme = "smtps" if mode == "smtps" else "smtp"
    url = f"{scheme}://{USER}:wrong@127.0.0.1:{port}"
    # (aiosmtpd answers a failed AUTH after STARTTLS by going silent: the short timeout ends it)
    transport = SmtpTransport(
        url, starttls=mode == "starttls", context=client_context(certificate), timeout=2
    )
    with pytest.raises(ServerUnavailable):
        transport.send(a_message(), "P <r@example.org>", "ann@example.org")
    assert recorder.received == []


def test_smtp_answers_map_to_what_happens_next() -> None:
    assert isinstance(classify(451, b"later"), TemporaryFailure)
    assert isinstance(classify(421, b"closing"), ServerUnavailable)
    assert isinstance(classify(550, b"no such user"), PermanentFailure)
    assert not isinstance(classify(550, b"x"), TemporaryFailure)


def test_smtp_url_schemes() -> None:
    assert isinstance(transport_for("smtp://h:25"), SmtpTransport)
    assert isinstance(transport_for("smtps://u:p@h"), SmtpTransport)
    assert isinstance(transport_for("file:///tmp/outbox"), FileTransport)
    with pytest.raises(ValueError, match="SMTP_URL must start with"):
        transport_for("http://h")


def test_the_file_transport_writes_each_message_as_an_eml_file(
    tmp_path: Path, make_petition: PetitionFactory, sign: Signer, run: Runner
) -> None:
    clara = make_petition("Outbox", "Clara LONG")
    old = make_petition("Old", "Olga OAK")
    sign(clara.id, "first@example.org", opt_in=False)
    sign(old.id, "ann@example.org", hours_ago=100)
    assert run(smtp_url=f"file://{tmp_path}/outbox").sent == 1
    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    assert email.message_from_bytes(eml.read_bytes())["Subject"] == "Clara is counting on you"


def test_the_local_outbox_server_writes_what_it_accepts_over_smtp(
    tmp_path: Path, make_petition: PetitionFactory, sign: Signer, run: Runner
) -> None:
    port = free_port()
    controller = serve_outbox(tmp_path / "outbox", "127.0.0.1", port)
    try:
        clara = make_petition("Outbox", "Clara LONG")
        old = make_petition("Old", "Olga OAK")
        sign(clara.id, "first@example.org", opt_in=False)
        sign(old.id, "ann@example.org", hours_ago=100)
        sign(old.id, "bob@example.org", hours_ago=100)
        assert run(smtp_url=f"smtp://127.0.0.1:{port}").sent == 2
    finally:
        controller.stop()
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 2
    assert {email.message_from_bytes(f.read_bytes())["To"] for f in files} == {
        "Ann Lee <ann@example.org>",
        "Ann Lee <bob@example.org>",
    }


def test_the_sink_is_started_only_for_a_local_plain_smtp_url() -> None:
    assert local_sink_address("smtp://127.0.0.1:8025") == ("127.0.0.1", 8025)
    assert local_sink_address("smtp://localhost:2525") == ("localhost", 2525)
    assert local_sink_address("smtp://relay.example.org:587") is None
    assert local_sink_address("smtp://user:pw@127.0.0.1:25") is None
    assert local_sink_address("smtps://127.0.0.1:465") is None
    assert local_sink_address("file:///tmp/outbox") is None


@pytest.mark.parametrize("url", ["smtp://user:pw@127.0.0.1:25", "smtp://user@127.0.0.1:587"])
def test_credentials_over_a_plain_connection_are_refused_before_connecting(url: str) -> None:
    # No server listens: the refusal comes before any connection, so nothing is ever sent
    with pytest.raises(PlainTextCredentials, match="SMTP_STARTTLS"):
        transport_for(url)
    assert transport_for(url, starttls=True) is not None
    assert transport_for(url.replace("smtp://", "smtps://")) is not None
