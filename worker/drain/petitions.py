"""Petition lifecycle in PostgreSQL (create, close, victory), mirrored into the Redis registry.

The database is written first and committed; the registry follows. If the registry write fails,
the next worker start resyncs it in full (`sync_registry`).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy import Connection, Engine, func, insert, select, update

from worker.db.models import petitions, signatures
from worker.drain.registry import PetitionCard, Registry
from worker.pipeline.emails import EmailChecker


class PetitionNotFound(LookupError):
    """No petition with that id: nothing was changed."""


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60] or "petition"


def create_petition(
    engine: Engine,
    registry: Registry,
    *,
    title: str,
    starter_name: str,
    starter_email: str | None = None,
    goal: int | None = None,
    confirm_email: bool = False,
    body: str | None = None,
    target: str | None = None,
) -> PetitionCard:
    """Create an open petition with the starter's own signature (count starts at 1; the
    starter's signature is counted in either mode: they confirmed by creating it)."""
    checked = EmailChecker().check(starter_email) if starter_email else None
    with engine.begin() as conn:
        petition_id = conn.execute(
            insert(petitions)
            .values(
                slug=f"new-{uuid4().hex}",
                title=title,
                starter_name=starter_name,
                goal=goal,
                signature_count=1,
                confirm_email=confirm_email,
                body=body,
                target=target,
            )
            .returning(petitions.c.id)
        ).scalar_one()
        slug = f"{petition_id}-{slugify(title)}"
        conn.execute(update(petitions).where(petitions.c.id == petition_id).values(slug=slug))
        conn.execute(
            insert(signatures).values(
                petition_id=petition_id,
                receipt=f"starter-{petition_id}",
                email=starter_email,
                canonical_email=checked.canonical if checked else None,
                name=starter_name,
                accepted_at=datetime.now(UTC),
            )
        )
    card = PetitionCard(
        petition_id, title, starter_name, "open", 1, slug, confirm_email, body or "", target or ""
    )
    registry.publish([card])
    return card


def set_confirm_email(engine: Engine, registry: Registry, petition_id: int, on: bool) -> PetitionCard:
    """Switch email-confirmation mode. Signatures already counted stay counted; from the next
    batch on, new ones are stored `pending` (on) or `validated` (off). Pending signatures made
    before a switch off can still be confirmed by their link."""
    return _update(engine, registry, petition_id, confirm_email=on)


def set_status(engine: Engine, registry: Registry, petition_id: int, status: str) -> PetitionCard:
    """Close a petition or mark it a victory; the intake refuses new signatures at once."""
    closed_at = func.coalesce(petitions.c.closed_at, func.now())
    return _update(engine, registry, petition_id, status=status, closed_at=closed_at)


def _update(engine: Engine, registry: Registry, petition_id: int, **values: object) -> PetitionCard:
    """Set `values` on the petition and publish its card; `PetitionNotFound` when there is none."""
    with engine.begin() as conn:
        changed = conn.execute(
            update(petitions).where(petitions.c.id == petition_id).values(**values).returning(petitions.c.id)
        ).first()
        if changed is None:
            raise PetitionNotFound(f"no petition {petition_id}")
        card = _cards(conn, petition_id)[0]
    registry.publish([card])
    return card


def sync_registry(engine: Engine, registry: Registry) -> int:
    """Write every petition to the registry (worker start). Returns how many."""
    with engine.connect() as conn:
        cards = _cards(conn)
    registry.publish(cards)
    return len(cards)


def _cards(conn: Connection, petition_id: int | None = None) -> list[PetitionCard]:
    query = select(
        petitions.c.id,
        petitions.c.title,
        petitions.c.starter_name,
        petitions.c.status,
        petitions.c.signature_count,
        petitions.c.slug,
        petitions.c.confirm_email,
        func.coalesce(petitions.c.body, ""),
        func.coalesce(petitions.c.target, ""),
    ).order_by(petitions.c.id)
    if petition_id is not None:
        query = query.where(petitions.c.id == petition_id)
    return [PetitionCard(*row) for row in conn.execute(query)]
