"""Sending a rendered message: over SMTP (`smtp://`, `smtps://`, optional STARTTLS and AUTH) or into
a directory of `.eml` files (`file:///path`). Driver errors are translated here into the three
outcomes the run acts on:

- `PermanentFailure`: the server refused this message for good (5xx to RCPT or DATA): mark the
  delivery failed, never retry it.
- `TemporaryFailure`: refused for now (4xx): retry this delivery later, with backoff; go on with
  the others.
- `ServerUnavailable`: no usable session (connection refused or lost, TLS or AUTH refused, 421,
  sender refused): retry this delivery later and stop the run; the next run tries again.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit


class DeliveryError(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{code or ''} {reason}".strip())
        self.code = code
        self.reason = reason


class PermanentFailure(DeliveryError):
    """5xx for this message: mark it failed, do not retry."""


class TemporaryFailure(DeliveryError):
    """4xx for this message: retry it later with backoff."""


class ServerUnavailable(TemporaryFailure):
    """The server cannot take mail now: retry this delivery later and stop the run."""


class PlainTextCredentials(ValueError):
    """SMTP credentials configured for a connection without TLS: refused before connecting."""


class Transport(Protocol):
    def send(self, msg: EmailMessage, sender: str, recipient: str) -> None:
        """Hand `msg` to the server for `recipient` only; returns once it was accepted."""

    def send_raw(self, data: bytes, sender: str, recipient: str) -> None:
        """The same for a message already written as bytes (CRLF lines)."""

    def close(self) -> None: ...


def transport_for(url: str, *, starttls: bool = False, timeout: float = 30.0) -> Transport:
    """The transport SMTP_URL names."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return FileTransport(Path(unquote(urlsplit(url).path) or "."))
    if scheme in ("smtp", "smtps"):
        return SmtpTransport(url, starttls=starttls, timeout=timeout)
    raise ValueError(f"SMTP_URL must start with smtp://, smtps:// or file://, not {scheme!r}://")


def _decode(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text[:200]


def classify(code: int, text: bytes | str) -> DeliveryError:
    """4xx -> temporary, 5xx -> permanent, 421 (closing) -> server unavailable."""
    if code == 421:
        return ServerUnavailable(code, _decode(text))
    if 400 <= code < 500:
        return TemporaryFailure(code, _decode(text))
    return PermanentFailure(code, _decode(text))


class SmtpTransport:
    """One SMTP session, opened on first use and reused for the run; reopened after an error."""

    def __init__(
        self,
        url: str,
        *,
        starttls: bool = False,
        timeout: float = 30.0,
        context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        self._implicit_tls = parts.scheme == "smtps"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (465 if self._implicit_tls else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else ""
        self._starttls = starttls
        if self._username and not (self._implicit_tls or starttls):
            raise PlainTextCredentials(
                "SMTP_URL carries a user name and password, which would cross the network in clear"
                " text: use smtps:// or set SMTP_STARTTLS=true"
            )
        self._timeout = timeout
        self._context = context or ssl.create_default_context()
        self._smtp: smtplib.SMTP | None = None

    def _session(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        smtp: smtplib.SMTP
        if self._implicit_tls:
            smtp = smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=self._context)
        else:
            smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        try:
            if self._starttls and not self._implicit_tls:
                smtp.starttls(context=self._context)
            if self._username:
                smtp.login(self._username, self._password)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _open(self) -> smtplib.SMTP:
        """The session; any failure to set it up (connect, TLS, AUTH) is the server's, not the message's."""
        try:
            return self._session()
        except smtplib.SMTPResponseException as exc:
            raise ServerUnavailable(exc.smtp_code, _decode(exc.smtp_error)) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ServerUnavailable(None, f"{type(exc).__name__}: {str(exc)[:120]}") from None

    def send(self, msg: EmailMessage, sender: str, recipient: str) -> None:
        smtp = self._open()
        self._translating(
            lambda: smtp.send_message(msg, from_addr=parseaddr(sender)[1], to_addrs=[recipient])
        )

    def send_raw(self, data: bytes, sender: str, recipient: str) -> None:
        smtp = self._open()
        # An internationalised address needs the server's SMTPUTF8 (as send_message asks for it).
        options = [] if recipient.isascii() else ["SMTPUTF8", "BODY=8BITMIME"]
        if options:
            self._translating(smtp.ehlo_or_helo_if_needed)
        if options and not smtp.has_extn("smtputf8"):
            raise PermanentFailure(None, "the server does not take internationalised addresses (SMTPUTF8)")
        self._translating(lambda: smtp.sendmail(parseaddr(sender)[1], [recipient], data, options))

    def _translating(self, send: Callable[[], object]) -> None:
        """Run one send, its driver errors translated into the three outcomes."""
        try:
            send()
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise classify(code, text) from None
        except smtplib.SMTPDataError as exc:
            raise classify(exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPNotSupportedError as exc:  # e.g. an internationalised address, no SMTPUTF8
            raise PermanentFailure(None, str(exc)[:200]) from None
        except smtplib.SMTPResponseException as exc:  # MAIL FROM refused: the session, not the message
            self.close()
            raise ServerUnavailable(exc.smtp_code, _decode(exc.smtp_error)) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, TLS failed
            self.close()
            raise ServerUnavailable(None, type(exc).__name__) from None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def write_eml(directory: Path, data: bytes) -> Path:
    """Write one message as `<time>-<random>.eml`, atomically (readers never see half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.eml"
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, directory / name)
    return directory / name


class FileTransport:
    """`file:///dir`: every message becomes a `.eml` file in `dir`; nothing leaves the machine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, msg: EmailMessage, sender: str, recipient: str) -> None:
        self.send_raw(bytes(msg), sender, recipient)

    def send_raw(self, data: bytes, sender: str, recipient: str) -> None:
        try:
            write_eml(self.directory, data)
        except OSError as exc:
            raise ServerUnavailable(None, f"cannot write to the outbox: {type(exc).__name__}") from None

    def close(self) -> None:
        return None
