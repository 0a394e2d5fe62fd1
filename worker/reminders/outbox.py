"""A local SMTP sink for development: every message it accepts is written as a `.eml` file.

`make run` (`sigingest up`) starts it on SMTP_URL's port so a newcomer can read in
`./.sigingest/outbox/` what reminders would have been sent; `sigingest reminders outbox` runs it
alone. It uses aiosmtpd, a development dependency, imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker.reminders.transport import write_eml

DEFAULT_OUTBOX = Path(".sigingest/outbox")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def local_sink_address(smtp_url: str) -> tuple[str, int] | None:
    """Where `sigingest up` should start the sink: SMTP_URL's host and port when it is a plain
    `smtp://` URL on this machine without credentials (the default), else None (a real server)."""
    parts = urlsplit(smtp_url)
    if parts.scheme != "smtp" or parts.username or (parts.hostname or "") not in LOCAL_HOSTS:
        return None
    return parts.hostname or "127.0.0.1", parts.port or 25


class OutboxHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        write_eml(self.directory, bytes(envelope.content))
        return "250 2.0.0 written to the outbox"


def serve_outbox(directory: Path = DEFAULT_OUTBOX, host: str = "127.0.0.1", port: int = 8025) -> Any:
    """Start the sink in a background thread; returns the aiosmtpd `Controller` (call `.stop()`)."""
    from aiosmtpd.controller import Controller

    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(OutboxHandler(directory), hostname=host, port=port)
    controller.start()
    return controller
