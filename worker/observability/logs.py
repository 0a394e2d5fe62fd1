"""Structured logs: one JSON object per line when stderr is not a terminal, readable text when it is.

Structured fields travel in `extra={"data": {...}}` and become JSON keys (or `key=value` on a
terminal). What we log never holds an email, a name or a raw IP: batch lines carry counts,
request lines carry route, status and timing (a test drives a workload at DEBUG and checks).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if isinstance(data, dict) and record.name.startswith("sigingest"):
            body.update(data)  # ours only: Celery puts task args in `data`, and args may be personal
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


class ReadableFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        data = getattr(record, "data", None)
        if isinstance(data, dict) and data and record.name.startswith("sigingest"):
            line += "  " + " ".join(f"{k}={v}" for k, v in data.items())
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure_logging(
    level: str | int = "INFO", stream: IO[str] | None = None, json: bool | None = None
) -> None:
    """Install our one handler on the root logger (replacing an earlier one of ours).

    `json=None` picks JSON unless the stream is a terminal."""
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    target = stream if stream is not None else sys.stderr
    use_json = not _is_tty(target) if json is None else json
    handler.setFormatter(JsonFormatter() if use_json else ReadableFormatter())
    handler.set_name("sigingest")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "sigingest"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
