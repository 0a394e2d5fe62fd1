"""`sigingest demo`: a viral spike against a running system, checked against PostgreSQL.

Creates (or reuses) the seed petition, fires `--signatures` submissions over HTTP from many
concurrent connections with shares of duplicates and invalid addresses, shows live progress,
waits until every accepted receipt is accounted for, and checks: unique valid signers expected
= rows persisted = the petition's count increase, duplicates and rejects as planned, and the
petition as a visitor sees it. A mismatch exits 1; a system that is not there exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from worker.drain.registry import PetitionCard
from worker.ops.demo.data import (
    SEED_BODY,
    SEED_STARTER,
    SEED_TARGET,
    SEED_TITLE,
    Snapshot,
    SpikeShape,
    Submission,
    Tally,
    plan_spike,
)
from worker.ops.demo.http import Connection, Target
from worker.ops.demo.report import Outcome, checks, print_summary
from worker.runtime import Runtime
from worker.settings import Settings

MAX_ATTEMPTS = 30  # per submission, over 503 (backlog full / Redis away) and dropped connections
WORKER_REJECTS = ("invalid_email", "invalid_field", "unknown_petition", "petition_closed")


class DemoAbort(RuntimeError):
    """The demo cannot go on (no intake, petition refused); nothing more is sent."""


def snapshot(conn: psycopg.Connection[Any], petition_id: int, rows: bool = True) -> Snapshot:
    """Counts for `petition_id`; `rows=False` skips the COUNT(*) of signatures (live polling)."""
    count, duplicates = conn.execute(
        "SELECT signature_count, duplicate_count FROM petitions WHERE id = %s", (petition_id,)
    ).fetchone() or (0, 0)
    rejected = conn.execute(
        "SELECT count(*) FROM rejected_signatures WHERE petition_id = %s AND reason = ANY(%s)",
        (petition_id, list(WORKER_REJECTS)),
    ).fetchone()
    real = (
        conn.execute(
            "SELECT count(*) FROM signatures WHERE petition_id = %s AND state = 'validated'", (petition_id,)
        ).fetchone()
        if rows
        else None
    )
    return Snapshot(
        int(real[0]) if real else -1, int(count), int(duplicates), int(rejected[0]) if rejected else 0
    )


# ---------------------------------------------------------------- the petition


def seed_petition(rt: Runtime) -> tuple[PetitionCard, bool]:
    """The open seed petition, reused if there is one; returns (card, created)."""
    from worker.drain.petitions import create_petition, sync_registry

    with psycopg.connect(rt.settings.libpq_url) as conn:
        row = conn.execute(
            "SELECT id, signature_count, slug FROM petitions WHERE title = %s AND starter_name = %s"
            " AND status = 'open' ORDER BY id LIMIT 1",
            (SEED_TITLE, SEED_STARTER),
        ).fetchone()
    if row is None:
        card = create_petition(
            rt.engine,
            rt.registry,
            title=SEED_TITLE,
            starter_name=SEED_STARTER,
            body=SEED_BODY,
            target=SEED_TARGET,
        )
        return card, True
    with psycopg.connect(rt.settings.libpq_url) as conn:  # a seed made before it had its words
        conn.execute(
            "UPDATE petitions SET body = coalesce(body, %s), target = coalesce(target, %s) WHERE id = %s",
            (SEED_BODY, SEED_TARGET, row[0]),
        )
    sync_registry(rt.engine, rt.registry)  # the intake must see it even if Redis was reset
    return PetitionCard(int(row[0]), SEED_TITLE, SEED_STARTER, "open", int(row[1]), str(row[2])), False


# ---------------------------------------------------------------- the spike


async def submit(conn: Connection, path: str, submission: Submission, key: str, tally: Tally) -> None:
    """Send one submission until it gets a final answer (202 or 422), or give up."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            answer = await conn.post_json(path, submission.body, {"Idempotency-Key": key})
        except (ConnectionError, TimeoutError, OSError):
            tally.retries += 1
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
            continue
        if answer.status in (202, 422):
            tally.record(submission, answer.status)
            return
        if answer.status == 503:
            tally.retries += 1
            await asyncio.sleep(min(float(answer.headers.get("retry-after", "1")), 2.0))
            continue
        raise DemoAbort(f"the intake answered {answer.status}: {answer.body[:200].decode(errors='replace')}")
    tally.given_up += 1


async def fire(
    url: str, petition_id: int, plan: list[Submission], run_id: str, concurrency: int, tally: Tally
) -> None:
    target = Target.parse(url)
    path = f"/petitions/{petition_id}/signatures"
    work = iter(enumerate(plan))

    async def client() -> None:
        conn = Connection(target)
        try:
            for n, submission in work:  # one iterator shared by every client: asyncio is one thread
                tally.sent += 1
                await submit(conn, path, submission, f"demo-{run_id}-{n}", tally)
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    tally.finished = time.monotonic()


# ---------------------------------------------------------------- progress


@dataclass
class Watch:
    """Live figures from PostgreSQL and Redis, relative to the baseline."""

    rt: Runtime
    petition_id: int
    base: Snapshot
    now: Snapshot = field(default_factory=lambda: Snapshot(0, 0, 0, 0))
    in_streams: int = 0
    history: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=20))

    def poll(self, conn: psycopg.Connection[Any], tally: Tally) -> None:
        self.now = snapshot(conn, self.petition_id, rows=False).minus(self.base)
        pipe = self.rt.redis.pipeline(transaction=False)
        for stream in self.rt.keys.streams():
            pipe.xlen(stream)
        self.in_streams = sum(int(n) for n in pipe.execute())
        self.history.append((time.monotonic(), tally.accepted, self.now.count))

    def accounted(self) -> int:
        return self.now.count + self.now.duplicates + self.now.rejected

    def rates(self) -> tuple[float, float]:
        if len(self.history) < 2:
            return 0.0, 0.0
        (t0, a0, p0), (t1, a1, p1) = self.history[0], self.history[-1]
        return (a1 - a0) / (t1 - t0), (p1 - p0) / (t1 - t0)


def progress_table(tally: Tally, watch: Watch) -> Table:
    accepted_rate, persisted_rate = watch.rates()
    table = Table(title=f"viral spike on petition {watch.petition_id}", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    table.add_row("sent", f"{tally.sent:,} / {tally.planned:,}")
    table.add_row("accepted (202)", f"{tally.accepted:,}")
    table.add_row("persisted", f"{watch.now.count:,}")
    table.add_row("duplicates", f"{watch.now.duplicates:,}")
    table.add_row("rejected (worker / intake 422)", f"{watch.now.rejected:,} / {tally.malformed:,}")
    table.add_row("backlog (accepted, not yet accounted)", f"{tally.accepted - watch.accounted():,}")
    table.add_row("stream entries in Redis", f"{watch.in_streams:,}")
    table.add_row("signatures/s accepted / persisted", f"{accepted_rate:,.0f} / {persisted_rate:,.0f}")
    table.add_row("retries (503, dropped connections)", f"{tally.retries:,}")
    return table


async def run_spike(
    opts: argparse.Namespace,
    rt: Runtime,
    card: PetitionCard,
    plan: list[Submission],
    run_id: str,
    base: Snapshot,
    console: Console,
) -> tuple[Tally, float]:
    """Fire the spike with a live display, then wait until every accepted receipt is accounted for.

    Returns the tally and when processing finished (monotonic)."""
    tally, watch = Tally(planned=len(plan)), Watch(rt, card.id, base)
    with psycopg.connect(rt.settings.libpq_url, autocommit=True) as conn, Live(
        progress_table(tally, watch), console=console, refresh_per_second=4, transient=not console.is_terminal
    ) as live:  # fmt: skip
        sender = asyncio.create_task(fire(opts.url, card.id, plan, run_id, opts.concurrency, tally))
        deadline: float | None = None
        while True:
            await asyncio.to_thread(watch.poll, conn, tally)
            live.update(progress_table(tally, watch))
            if sender.done():
                sender.result()  # raises DemoAbort from the clients
                deadline = deadline or time.monotonic() + opts.wait
                if watch.accounted() >= tally.accepted or time.monotonic() > deadline:
                    return tally, time.monotonic()
            await asyncio.sleep(0.25)


# ---------------------------------------------------------------- the command


def intake_card(url: str, petition_id: int) -> dict[str, Any]:
    """The petition as a visitor's browser gets it from the intake."""
    answer = httpx.get(f"{url}/petitions/{petition_id}", timeout=10)
    if answer.status_code != 200:
        raise DemoAbort(
            f"the intake at {url} does not know petition {petition_id} ({answer.status_code}): "
            "is it using the same Redis as this command (REDIS_URL, KEY_PREFIX)?"
        )
    card: dict[str, Any] = answer.json()
    return card


def check_intake(url: str) -> None:
    try:
        answer = httpx.get(f"{url}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        raise DemoAbort(
            f"no intake answers at {url} ({type(exc).__name__}); start one with `make run`"
        ) from None
    if answer.status_code != 200:
        raise DemoAbort(f"the intake at {url} is not ready ({answer.status_code}: {answer.text[:200]})")


def run_demo(opts: argparse.Namespace, settings: Settings, console: Console) -> int:
    from worker.drain.petitions import set_status

    if opts.signatures < 1 or opts.concurrency < 1:
        raise ValueError("--signatures and --concurrency must be at least 1")
    shape = SpikeShape(opts.signatures, opts.duplicate_share, opts.invalid_share)
    run_id = uuid.uuid4().hex[:8]
    plan = plan_spike(shape, run_id, seed=opts.seed)
    check_intake(opts.url)
    rt = Runtime(settings)
    try:
        card, created = seed_petition(rt)
        verb = "created" if created else "reusing"
        console.print(f"{verb} petition {card.id}: {card.title!r} by {card.starter_name}", soft_wrap=True)
        intake_card(opts.url, card.id)
        with psycopg.connect(settings.libpq_url) as conn:
            base = snapshot(conn, card.id)
        tally, done = asyncio.run(run_spike(opts, rt, card, plan, run_id, base, console))
        with psycopg.connect(settings.libpq_url) as conn:
            final = snapshot(conn, card.id)
        if opts.victory:
            set_status(rt.engine, rt.registry, card.id, "victory")
        visitor = intake_card(opts.url, card.id)
        outcome = Outcome(card, plan, tally, base, final, visitor, done)
        results = checks(outcome)
        print_summary(console, outcome, results)
        return 0 if all(ok for _, _, _, ok in results) else 1
    finally:
        rt.engine.dispose()
        rt.redis.close()


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    console = Console()
    try:
        return run_demo(args, settings, console)
    except (DemoAbort, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}; nothing more was sent", soft_wrap=True)
        return 2


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="fire a viral spike at a running system and check the result")
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="the intake (default %(default)s)")
    demo.add_argument(
        "--signatures", type=int, default=100_000, help="submissions to send (default %(default)s)"
    )
    demo.add_argument(
        "--duplicate-share", type=float, default=0.1, help="share of duplicates (default %(default)s)"
    )
    demo.add_argument(
        "--invalid-share", type=float, default=0.02, help="share of invalid emails (default %(default)s)"
    )
    demo.add_argument(
        "--concurrency", type=int, default=64, help="concurrent connections (default %(default)s)"
    )
    demo.add_argument(
        "--wait", type=float, default=300.0, help="seconds to wait for the workers after sending"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed of the spike's shape")
    demo.add_argument("--victory", action="store_true", help="mark the petition a victory at the end")
    demo.set_defaults(run=cmd_demo)
