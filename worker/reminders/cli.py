"""`sigingest reminders preview | send | outbox`."""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker.settings import Settings


def register(sub: Any) -> None:
    """Add `reminders` and its actions to `sigingest`'s subparsers."""
    reminders = sub.add_parser("reminders", help="preview or send reminder emails, or run a local outbox")
    actions = reminders.add_subparsers(dest="action", required=True)
    preview = actions.add_parser("preview", help="print who would get what, without sending")
    preview.add_argument("--petition", type=int, required=True)
    preview.add_argument("--limit", type=int, default=5)
    preview.set_defaults(run=cmd_preview)
    actions.add_parser("send", help="do one run now (what beat does every REMINDER_EVERY)").set_defaults(
        run=cmd_send
    )
    outbox = actions.add_parser("outbox", help="an SMTP sink writing each message as a .eml file")
    outbox.add_argument("--dir", type=Path, default=Path(".sigingest/outbox"))
    outbox.add_argument("--host", help="default: SMTP_URL's host")
    outbox.add_argument("--port", type=int, help="default: SMTP_URL's port")
    outbox.set_defaults(run=cmd_outbox)


def cmd_preview(args: argparse.Namespace, settings: Settings) -> int:
    from worker.reminders.preview import preview
    from worker.runtime import Runtime

    rt = Runtime(settings)
    try:
        print(preview(settings, rt.redis, args.petition, args.limit))
    finally:
        rt.redis.close()
    return 0


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from worker.reminders.run import send_due
    from worker.runtime import Runtime

    rt = Runtime(settings)
    report = send_due(settings, rt.redis)
    print(json.dumps(report.summary()))
    return 0


def cmd_outbox(args: argparse.Namespace, settings: Settings) -> int:
    from worker.reminders.outbox import serve_outbox

    url = urlsplit(settings.smtp_url)
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before the server thread starts: it inherits the mask
    controller = serve_outbox(
        args.dir, args.host or url.hostname or "127.0.0.1", args.port or url.port or 8025
    )
    print(f"outbox: SMTP on {controller.hostname}:{controller.port}, writing to {args.dir}/", flush=True)
    try:
        signal.sigwait(stop)
    finally:
        controller.stop()
    return 0
