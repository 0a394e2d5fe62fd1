"""`sigingest`: the operator's command line."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from worker.integrity import commands as integrity_commands
from worker.ops import deadletters, stats_cli, up
from worker.ops.demo import run as demo
from worker.reminders import cli as reminders_cli
from worker.settings import InsecureSecrets, Settings, settings_error

Command = Callable[[argparse.Namespace, Settings], int]
CELERY = [sys.executable, "-m", "celery", "-A", "worker"]  # the app in worker/celery.py


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from worker.db.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    print("database is at the latest migration")
    return 0


def cmd_petition(args: argparse.Namespace, settings: Settings) -> int:
    from worker.drain.petitions import PetitionNotFound, create_petition, set_confirm_email, set_status
    from worker.runtime import Runtime

    if args.action == "create":
        try:
            body = _read_text(args.text_file) if args.text_file else None
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: cannot read --text-file: {exc}; nothing created", file=sys.stderr)
            return 2
        rt = Runtime(settings)
        card = create_petition(
            rt.engine,
            rt.registry,
            title=args.title,
            starter_name=args.starter,
            starter_email=args.starter_email,
            goal=args.goal,
            confirm_email=args.confirm_email,
            body=body,
            target=args.target,
        )
        print(card.id)
        return 0
    rt = Runtime(settings)
    try:
        if args.action == "set":
            card = set_confirm_email(rt.engine, rt.registry, args.id, args.confirm_email)
            mode = "email confirmation" if card.confirm_email else "no confirmation"
            print(f"petition {card.id} now signs with {mode}")
            return 0
        card = set_status(rt.engine, rt.registry, args.id, "closed" if args.action == "close" else "victory")
    except PetitionNotFound as exc:
        print(f"error: {exc}; nothing changed", file=sys.stderr)
        return 1
    print(f"petition {card.id} is now {card.status}")
    return 0


MAX_TEXT_BYTES = 64 * 1024


def _read_text(path: str) -> str:
    """The petition's text, UTF-8, at most 64 KiB, without NUL bytes (PostgreSQL refuses them)."""
    with open(path, "rb") as file:
        data = file.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise OSError(f"the text is longer than {MAX_TEXT_BYTES} bytes")
    return data.decode("utf-8").replace("\x00", "").replace("\r\n", "\n").strip()


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_secrets()
    workers = args.workers or settings.api_workers
    if workers > 1 and not settings.intake_metrics_dir:
        # Granian's processes share the port: each scrape lands on one of them, so they pool
        # their request figures here (api_stub/metrics/tally_files.py). Fresh per run.
        os.environ["INTAKE_METRICS_DIR"] = tempfile.mkdtemp(prefix="sigingest-intake-metrics-")
    argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--host",
        args.host or settings.host,
        "--port",
        str(args.port or settings.port),
        "--workers",
        str(workers),
        "--no-ws",
        "--log-level",
        "warning",
        "api_stub.app:create_app",
    ]
    os.execvp(argv[0], argv)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    argv = [
        *CELERY,
        "worker",
        "-Q",
        args.queues,
        "-c",
        str(args.concurrency or settings.worker_concurrency),
        "--loglevel",
        settings.log_level,
        *args.celery_args,
    ]
    os.execvp(argv[0], argv)


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    argv = [
        *CELERY,
        "beat",
        "--loglevel",
        settings.log_level,
        "--schedule",
        args.schedule,
    ]
    os.execvp(argv[0], argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sigingest", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(run=cmd_migrate)

    petition = sub.add_parser("petition", help="create, close or mark a petition a victory")
    actions = petition.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a petition and print its id")
    create.add_argument("--title", required=True)
    create.add_argument("--starter", required=True, help='the starter\'s name, e.g. "Clara LONG"')
    create.add_argument("--starter-email")
    create.add_argument("--goal", type=int)
    create.add_argument(
        "--confirm-email",
        action="store_true",
        help="count a signature only once its signer confirms by email",
    )
    create.add_argument("--text-file", help="the petition's text (Markdown or plain paragraphs, UTF-8)")
    create.add_argument("--target", help='the decision maker, e.g. "Massachusetts Governor Deval Patrick"')
    set_mode = actions.add_parser("set", help="switch a petition's email-confirmation mode")
    set_mode.add_argument("id", type=int)
    set_mode.add_argument(
        "--confirm-email", action=argparse.BooleanOptionalAction, required=True,
        help="--confirm-email: count only confirmed signatures from now on; --no-confirm-email: at once",
    )  # fmt: skip
    for action in ("close", "victory"):
        actions.add_parser(action).add_argument("id", type=int)
    petition.set_defaults(run=cmd_petition)

    api = sub.add_parser("api", help="serve the intake (Granian)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int)
    api.set_defaults(run=cmd_api)

    worker = sub.add_parser("worker", help="run a Celery worker (celery -A worker worker)")
    worker.add_argument("-Q", "--queues", default="ingest")
    worker.add_argument("-c", "--concurrency", type=int)
    worker.add_argument("celery_args", nargs=argparse.REMAINDER)
    worker.set_defaults(run=cmd_worker)

    beat = sub.add_parser("beat", help="run Celery beat (scheduled reminders and checks)")
    beat.add_argument("--schedule", default="celerybeat-schedule")
    beat.set_defaults(run=cmd_beat)
    reminders_cli.register(sub)
    up.register(sub)
    demo.register(sub)
    stats_cli.register(sub)
    integrity_commands.register(sub)
    deadletters.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        settings = Settings.from_env()
        # Beside a running `sigingest up`, commands use its embedded servers unless the env says otherwise.
        return run(args, up.attach(settings) if getattr(args, "attach", True) else settings)
    except (ValidationError, InsecureSecrets) as exc:
        print(f"error: {settings_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
