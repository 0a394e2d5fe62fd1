"""Signatures written straight into PostgreSQL (generate_series), for the operator commands."""

from __future__ import annotations

from datetime import datetime

import psycopg

DB = psycopg.Connection[tuple[object, ...]]


def add_signatures(
    db: DB,
    petition_id: int,
    n: int,
    *,
    tag: str,
    domain: str = "example.org",
    ip_hash: str | None = None,
    country: str | None = None,
    state: str = "validated",
    accepted_at: datetime | None = None,
    counted: bool = True,
) -> None:
    """`n` signers `<tag><i>@<domain>`; validated ones are added to the count, as the writer does."""
    db.execute(
        """INSERT INTO signatures (petition_id, receipt, email, canonical_email, name, postcode, country,
                                   ip_hash, state, accepted_at, opt_in)
           SELECT %(p)s, %(tag)s || g, %(tag)s || g || '@' || %(domain)s, %(tag)s || g || '@' || %(domain)s,
                  'Name ' || %(tag)s || g, 'PC' || g, %(country)s, %(ip)s, %(state)s,
                  coalesce(%(at)s, now()), true
           FROM generate_series(1, %(n)s) g""",
        {
            "p": petition_id,
            "tag": tag,
            "domain": domain,
            "country": country,
            "ip": ip_hash,
            "state": state,
            "at": accepted_at,
            "n": n,
        },
    )
    if counted and state == "validated":
        db.execute(
            "UPDATE petitions SET signature_count = signature_count + %s WHERE id = %s", [n, petition_id]
        )


def value(db: DB, sql: str, *params: object) -> object:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def signature_count(db: DB, petition_id: int) -> object:
    return value(db, "SELECT signature_count FROM petitions WHERE id = %s", petition_id)


def validated(db: DB, petition_id: int) -> object:
    return value(
        db, "SELECT count(*) FROM signatures WHERE petition_id = %s AND state = 'validated'", petition_id
    )
