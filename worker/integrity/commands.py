"""`sigingest invalidate | reconcile | export | anonymize | forget | suspicious`.

Each command prints what it did (numbers, petition ids; never a name or an email, except the
export's own output) and exits 1 with an `error:` line saying what was left unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from typing import Any, TextIO

from worker.errors import RetryLater
from worker.settings import Settings


def moment(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-29T10:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def day(text: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(text), time(0), UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


@contextmanager
def _runtime(settings: Settings) -> Iterator[Any]:
    from worker.runtime import Runtime

    rt = Runtime(settings)
    try:
        yield rt
    finally:
        rt.redis.close()


def cmd_invalidate(args: argparse.Namespace, settings: Settings) -> int:
    from worker.integrity.db import connect, settle
    from worker.integrity.invalidate import BadCriteria, Criteria, PetitionMissing, count_matching, invalidate

    try:
        criteria = Criteria(args.petition, args.ip_hash, args.domain, args.email, args.since, args.until)
    except BadCriteria as exc:
        return _fail(f"{exc}; nothing changed")
    with connect(settings.libpq_url) as conn, _runtime(settings) as rt:
        try:
            if args.dry_run:
                print(f"dry run: {count_matching(conn, criteria)} signatures would be invalidated")
                return 0
            done = invalidate(conn, criteria, batch_size=args.batch_size, publish=rt.registry.set_counts)
            if done.changed:
                settle(conn, [args.petition], rt.registry.set_counts, settings.count_settle_seconds)
        except PetitionMissing as exc:
            return _fail(str(exc))
        except RetryLater as exc:
            return _fail(f"{exc}; batches already reported are committed, rerun to finish (idempotent)")
    count = "" if done.signature_count is None else f"; signature count is now {done.signature_count}"
    print(f"invalidated {done.changed} signatures on petition {args.petition}{count}")
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from worker.integrity.jobs import reconcile_signature_counts

    with _runtime(settings) as rt:
        try:
            drifts = reconcile_signature_counts(rt, fix=args.fix)
        except RetryLater as exc:
            return _fail(f"{exc}; repairs already reported are committed, rerun to finish")
    for d in drifts:
        state = "repaired" if d.fixed else ("already right" if args.fix else "not repaired")
        print(
            f"petition {d.petition_id}: recorded {d.recorded}, "
            f"validated {d.actual} ({d.difference:+d}), {state}"
        )
    print(f"{len(drifts)} petitions drifted" if drifts else "every count matches its validated signatures")
    return 1 if drifts and not args.fix else 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from worker.integrity.db import connect
    from worker.integrity.privacy import export_csv

    out: TextIO = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        with connect(settings.libpq_url) as conn:
            written = export_csv(
                conn,
                args.petition,
                out,
                include_email=args.include_email,
                include_pending=args.include_pending,
            )
    except LookupError as exc:
        if args.output:
            os.unlink(args.output)  # the file we just created holds nothing
        return _fail(f"{exc}; nothing exported")
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {written} signatures", file=sys.stderr)
    return 0


def cmd_anonymize(args: argparse.Namespace, settings: Settings) -> int:
    from worker.integrity.db import connect
    from worker.integrity.privacy import anonymize

    with connect(settings.libpq_url) as conn:
        changed = anonymize(conn, args.closed_before, batch_size=args.batch_size)
    print(f"anonymized {changed} signatures on petitions closed before {args.closed_before.date()}")
    return 0


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    """Erase one person. Two steps, each safe to repeat: PostgreSQL (one transaction, after the
    mark for queued entries), then Redis (published counts, dead letters). A failure in the second
    says what the first did and to run the command again, which then finds nothing left in
    PostgreSQL and finishes Redis."""
    from worker.drain.erasures import Erasures
    from worker.integrity.db import connect, settle
    from worker.integrity.privacy import forget, forget_dead_letters

    with connect(settings.libpq_url) as conn, _runtime(settings) as rt:
        try:
            erasures = Erasures(rt.redis, rt.keys, settings.ip_hash_secret)
            gone = forget(conn, args.email, publish=rt.registry.set_counts, mark=erasures.mark)
        except (ValueError, RetryLater) as exc:
            return _fail(f"{exc}; nothing changed")
        done = f"erased {gone.signatures} signatures (counts now {_counts(gone.counts)})"
        try:
            settle(conn, gone.counts, rt.registry.set_counts, settings.count_settle_seconds)
            dead = forget_dead_letters(conn, rt.redis, rt.keys, args.email)
        except RetryLater as exc:
            return _fail(
                f"{done} in PostgreSQL, but Redis failed ({exc}): the person's dead letters may "
                "remain and published counts may lag. Run the same `sigingest forget` again once "
                "Redis answers; it is safe to repeat"
            )
    print(f"erased {gone.signatures} signatures and {dead} dead letters; counts now {_counts(gone.counts)}")
    return 0


def _counts(counts: dict[int, int]) -> str:
    return ", ".join(f"petition {p}: {c}" for p, c in sorted(counts.items())) or "unchanged"


def cmd_suspicious(args: argparse.Namespace, settings: Settings) -> int:
    from worker.integrity.db import connect
    from worker.integrity.jobs import suspicion_rules
    from worker.integrity.suspicious import find_suspicious

    with connect(settings.libpq_url) as conn:
        report = find_suspicious(conn, datetime.now(UTC), suspicion_rules(settings))
    for f in report.findings:
        print(
            f"petition {f.petition_id}: {f.kind} {f.value} sent {f.signatures} of {f.total} ({f.share:.0%})"
        )
    if not report.findings:
        print("no petition has a suspicious share of the last hour's signatures")
    return 0


def register(sub: Any) -> None:
    """Add the integrity commands to `sigingest`'s subparsers."""
    add: Callable[..., argparse.ArgumentParser] = sub.add_parser

    inv = add("invalidate", help="mark matching validated signatures invalidated and uncount them")
    inv.add_argument("--petition", type=int, required=True)
    inv.add_argument("--ip-hash", help="the keyed IP hash as stored (see `sigingest suspicious`)")
    inv.add_argument("--domain", help="email domain, exact")
    inv.add_argument("--email", help="one person, by canonical email")
    inv.add_argument("--since", type=moment, help="accepted at or after (ISO 8601; UTC if no zone)")
    inv.add_argument("--until", type=moment, help="accepted before")
    inv.add_argument("--dry-run", action="store_true", help="print how many would change; change nothing")
    inv.add_argument("--batch-size", type=positive, default=5000)
    inv.set_defaults(run=cmd_invalidate)

    rec = add("reconcile", help="compare counts with validated signatures; --fix repairs drift")
    rec.add_argument("--fix", action="store_true")
    rec.set_defaults(run=cmd_reconcile)

    exp = add("export", help="stream a petition's validated signatures as CSV")
    exp.add_argument("--petition", type=int, required=True)
    exp.add_argument("--format", choices=["csv"], default="csv")
    exp.add_argument("--include-email", action="store_true")
    exp.add_argument(
        "--include-pending",
        action="store_true",
        help="also signatures awaiting email confirmation (not counted), with a state column",
    )
    exp.add_argument("--output", help="file to write (default: standard output)")
    exp.set_defaults(run=cmd_export)

    ano = add("anonymize", help="irreversibly anonymize signers of petitions closed before DATE")
    ano.add_argument("--closed-before", type=day, required=True, metavar="DATE")
    ano.add_argument("--batch-size", type=positive, default=5000)
    ano.set_defaults(run=cmd_anonymize)

    fgt = add("forget", help="erase one person (by canonical email) from every petition")
    fgt.add_argument("email", metavar="EMAIL")
    fgt.set_defaults(run=cmd_forget)

    sus = add("suspicious", help="petitions with a suspicious share of the last hour's signatures")
    sus.set_defaults(run=cmd_suspicious)
