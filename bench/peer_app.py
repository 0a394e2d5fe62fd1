"""The peers: what a team would build with Celery alone, on the same schema and the same data.

- `peer.single`: one task per signature (`task.delay`), validate, insert one row and
  `UPDATE petitions SET signature_count = signature_count + 1`, one transaction each.
- `peer.batch`: one message per signature buffered by `celery_batches.Batches` (flush every
  2,000 or 0.2 s): one bulk insert and one counter update per petition per flush.

Run: `celery -A bench.peer_app worker -Q peer_single` (or `-Q peer_batch`), with
`PEER_BROKER_PREFIX` and `DATABASE_URL` set by the benchmark.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psycopg
from celery import Celery
from celery_batches import Batches
from email_validator import EmailNotValidError, validate_email

from worker.pipeline.emails import canonical_email

app = Celery(
    "peers",
    broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    # The benchmark's own key prefix: the shared Redis keeps other engineers' queues apart.
    broker_transport_options={"global_keyprefix": os.environ.get("PEER_BROKER_PREFIX", "sigbench:peer:")},
)
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    task_routes={"peer.single": {"queue": "peer_single"}, "peer.batch": {"queue": "peer_batch"}},
)
_conn: psycopg.Connection[tuple[Any, ...]] | None = None


def conn() -> psycopg.Connection[tuple[Any, ...]]:
    global _conn
    if _conn is None:
        url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        _conn = psycopg.connect(url)
    return _conn


def check(email: str) -> str | None:
    """The canonical address, or None for an invalid one (email-validator, as a team would)."""
    try:
        return canonical_email(validate_email(email, check_deliverability=False).normalized)
    except EmailNotValidError:
        return None


@app.task(name="peer.single")  # type: ignore[untyped-decorator]
def single(receipt: str, petition_id: int, email: str, name: str, accepted_ms: int) -> None:
    c = conn()
    accepted = datetime.fromtimestamp(accepted_ms / 1000, UTC)
    canonical = check(email)
    with c.transaction():
        if canonical is None:
            c.execute(
                "INSERT INTO rejected_signatures (receipt, petition_id, reason, accepted_at) "
                "VALUES (%s, %s, 'invalid_email', %s)",
                (receipt, petition_id, accepted),
            )
            return
        row = c.execute(
            "INSERT INTO signatures (receipt, petition_id, email, canonical_email, name, accepted_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            (receipt, petition_id, email, canonical, name, accepted),
        ).fetchone()
        if row:
            c.execute(
                "UPDATE petitions SET signature_count = signature_count + 1 WHERE id = %s", (petition_id,)
            )
        else:
            c.execute(
                "INSERT INTO rejected_signatures (receipt, petition_id, reason, accepted_at) "
                "VALUES (%s, %s, 'duplicate', %s)",
                (receipt, petition_id, accepted),
            )


@app.task(name="peer.batch", base=Batches, flush_every=2000, flush_interval=0.2)  # type: ignore[untyped-decorator]
def batch(requests: list[Any]) -> None:
    c = conn()
    good: list[tuple[str, int, str, str, str, datetime]] = []
    bad: list[tuple[str, int, datetime]] = []
    for request in requests:
        receipt, petition_id, email, name, accepted_ms = request.args
        accepted = datetime.fromtimestamp(accepted_ms / 1000, UTC)
        canonical = check(email)
        if canonical is None:
            bad.append((receipt, petition_id, accepted))
        else:
            good.append((receipt, petition_id, email, canonical, name, accepted))
    with c.transaction():
        inserted = c.execute(
            "INSERT INTO signatures (receipt, petition_id, email, canonical_email, name, accepted_at) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], "
            "%s::timestamptz[]) ON CONFLICT DO NOTHING RETURNING receipt, petition_id",
            [list(col) for col in zip(*good, strict=True)] if good else [[]] * 6,
        ).fetchall()
        kept = {r for r, _ in inserted}
        rejects = [(r, p, "invalid_email", a) for r, p, a in bad]
        rejects += [(g[0], g[1], "duplicate", g[5]) for g in good if g[0] not in kept]
        if rejects:
            c.execute(
                "INSERT INTO rejected_signatures (receipt, petition_id, reason, accepted_at) "
                "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::timestamptz[])",
                [list(col) for col in zip(*rejects, strict=True)],
            )
        counts = Counter(p for _, p in inserted)
        for petition_id in sorted(counts):
            c.execute(
                "UPDATE petitions SET signature_count = signature_count + %s WHERE id = %s",
                (counts[petition_id], petition_id),
            )
