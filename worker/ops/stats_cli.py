"""`sigingest stats [--json] [--watch]`: the pipeline at a glance (see worker/observability/stats.py)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from worker.drain.durability import AckPolicy
from worker.errors import QueueUnavailable
from worker.keys import Keys
from worker.observability.stats import Stats, gather
from worker.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stats = sub.add_parser("stats", help="queue, totals and busiest petitions (from Redis)")
    stats.add_argument("--json", action="store_true", help="one JSON document (per refresh with --watch)")
    stats.add_argument("--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C")
    stats.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    stats.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)  # refreshes, for tests
    stats.set_defaults(run=cmd_stats)


def render(stats: Stats) -> Group:
    """The human view: shards, totals, busiest petitions."""
    shards = Table(title="shards", title_justify="left")
    for column in ("shard", "length", "pending", "undelivered", "oldest pending", "lag", "consumers"):
        shards.add_column(column, justify="right")
    for s in stats.shards:
        shards.add_row(
            str(s.shard),
            f"{s.length:,}",
            f"{s.pending:,}",
            f"{s.undelivered:,}",
            f"{s.oldest_pending_age_seconds:.1f}s",
            f"{s.lag_seconds:.1f}s",
            str(s.consumers),
        )
    totals = Table(title="totals", title_justify="left", show_header=False)
    totals.add_column("what")
    totals.add_column("n", justify="right")
    for name, value in [
        ("accepted", stats.accepted),
        ("persisted", stats.persisted),
        ("duplicates", stats.duplicates),
        *((f"rejected: {reason}", n) for reason, n in sorted(stats.rejected.items())),
        ("stored uncounted", stats.uncounted),
        ("dead-lettered", stats.dead_lettered),
        ("dead letters waiting", stats.dead_letters_waiting),
        ("stored awaiting confirmation", stats.pending),
        ("confirmed by email", stats.confirmed),
        ("confirmations refused", stats.refused_confirmations),
        ("expired unconfirmed", stats.expired),
        ("confirmation emails owed", stats.confirm_emails_owed),
    ]:
        totals.add_row(name, f"{value:,}")
    petitions = Table(title="busiest petitions (last minute)", title_justify="left")
    for column, justify in (("id", "right"), ("title", "left"), ("count", "right"), ("last minute", "right")):
        petitions.add_column(column, justify=justify)  # type: ignore[arg-type]
    for p in stats.petitions:
        petitions.add_row(str(p.id), p.title[:60], f"{p.signature_count:,}", f"{p.last_minute:,}")
    suspicious = Table(title="suspicious shares (last hourly report)", title_justify="left")
    for column in ("petition", "source", "value (for sigingest invalidate)", "signatures", "of", "share"):
        suspicious.add_column(column, justify="right")
    for f in stats.suspicious.findings if stats.suspicious else []:
        source = "hashed IP" if f.kind == "ip" else "email domain"
        row = (str(f.petition_id), source, f.value, f"{f.signatures:,}", f"{f.total:,}", f"{f.share:.0%}")
        suspicious.add_row(*row)
    return Group(shards, totals, petitions, suspicious, _durability(stats.durability))


def _durability(found: dict[str, object]) -> Table:
    """The acknowledgement mode in force, whether it holds, the replicas and their lag."""
    table = Table(title="acknowledgement durability", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, value in found.items():
        table.add_row(name.replace("_", " "), "-" if value is None else str(value))
    return table


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from worker.connections import redis_client

    client = redis_client(settings)
    keys = Keys(settings.key_prefix, settings.shards)
    ack = AckPolicy.from_settings(settings)
    return show(lambda: gather(client, keys, time.time(), ack=ack), args, Console())


def show(read: Callable[[], Stats], args: argparse.Namespace, console: Console) -> int:
    """Print once, or refresh until Ctrl-C (or `--count` refreshes). Exit 1 if Redis is gone."""
    try:
        if not args.watch:
            _print(read(), args.json, console)
            return 0
        return _watch(read, args, console)
    except QueueUnavailable as exc:
        print(f"error: cannot read Redis ({exc}); is REDIS_URL right and Redis up?", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _print(stats: Stats, as_json: bool, console: Console) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(stats.as_dict()).decode() + "\n")
        sys.stdout.flush()
    else:
        console.print(render(stats))


def _watch(read: Callable[[], Stats], args: argparse.Namespace, console: Console) -> int:
    refreshes = 0
    if args.json or not console.is_terminal:  # a pipe gets one frame per refresh
        while not args.count or refreshes < args.count:
            _print(read(), args.json, console)
            refreshes += 1
            time.sleep(args.interval)
        return 0
    with Live(render(read()), console=console, auto_refresh=False) as live:
        while not args.count or refreshes < args.count:
            time.sleep(args.interval)
            live.update(render(read()), refresh=True)
            refreshes += 1
    return 0
