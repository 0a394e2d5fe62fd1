"""The tables, as SQLAlchemy Core metadata. Alembic migrations in `worker/db/migrations/` create them.

Signature states follow a large public petitions site: `validated` signatures are counted;
`fraudulent` and `invalidated` ones are kept for audit and never counted; `pending` ones (a
petition in email-confirmation mode) wait for their signer to follow the emailed link, and
are counted only then.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)

metadata = MetaData()

PETITION_STATUSES = ("open", "closed", "victory")
SIGNATURE_STATES = ("pending", "validated", "invalidated", "fraudulent")
REJECT_REASONS = (
    "invalid_email",
    "unknown_petition",
    "petition_closed",
    "invalid_field",
    "duplicate",
    "erased",  # `sigingest forget` (the receipt only, no personal data)
    "expired",  # pending, never confirmed within CONFIRM_TTL (the row is deleted)
)

petitions = Table(
    "petitions",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("slug", Text, nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("starter_name", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="open"),
    Column("signature_count", BigInteger, nullable=False, server_default="0"),
    Column("duplicate_count", BigInteger, nullable=False, server_default="0"),
    Column("goal", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("closed_at", DateTime(timezone=True)),
    Column("confirm_email", Boolean, nullable=False, server_default="false"),
    Column("body", Text),  # the petition's own words (Markdown or plain paragraphs)
    Column("target", Text),  # the decision maker it is addressed to
    Column("awaiting_count", BigInteger, nullable=False, server_default="0"),  # pending signatures
    CheckConstraint("status IN ('open', 'closed', 'victory')", name="petitions_status"),
)

signatures = Table(
    "signatures",
    metadata,
    Column("id", BigInteger, primary_key=True),
    # References petitions.id, checked by triggers once per statement instead of a foreign key's
    # per-row look-up (migration 0003): a missing petition is refused with SQLSTATE 23503.
    Column("petition_id", BigInteger, nullable=False),
    Column("receipt", Text, nullable=False, unique=True),
    Column("email", Text),  # as typed, for sending mail; NULL only for a starter without one
    Column("canonical_email", Text),  # the deduplication key
    Column("name", Text, nullable=False),
    Column("postcode", Text),
    Column("country", Text),
    Column("opt_in", Boolean, nullable=False, server_default="false"),
    Column("ip_hash", Text),  # keyed hash; the raw IP is never stored
    Column("state", Text, nullable=False, server_default="validated"),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("persisted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("confirm_sent_at", DateTime(timezone=True)),  # NULL while pending: the email is owed
    Column("confirm_reminded_at", DateTime(timezone=True)),
    Column("confirmed_at", DateTime(timezone=True)),
    # At most one live row (validated, or pending its signer's confirmation) per person and
    # petition; uncounted rows (fraudulent, invalidated) never take the person's place: the third
    # key is NULL for them (migration 0004). Leads with canonical_email: it also serves look-ups
    # by person (forget, reminders).
    Index(
        "signatures_one_counted_per_person",
        "canonical_email",
        "petition_id",
        text("(CASE WHEN state IN ('validated', 'pending') THEN true END)"),
        unique=True,
    ),
    CheckConstraint(
        "state IN ('pending', 'validated', 'invalidated', 'fraudulent')", name="signatures_state"
    ),
    Index("signatures_petition_accepted", "petition_id", "accepted_at"),
    Index(
        "signatures_confirm_unsent",
        "id",
        postgresql_where=text("state = 'pending' AND confirm_sent_at IS NULL"),
    ),
    Index("signatures_pending_accepted", "accepted_at", postgresql_where=text("state = 'pending'")),
)

refused_confirmations = Table(
    "refused_confirmations",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("receipt", Text, nullable=False, unique=True),
    Column("petition_id", BigInteger),
    Column("reason", Text, nullable=False),  # expired, erased, invalidated, unknown, ...
    Column("refused_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

rejected_signatures = Table(
    "rejected_signatures",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("receipt", Text, nullable=False, unique=True),
    Column("petition_id", BigInteger),  # no foreign key: unknown petitions are a reason
    Column("reason", Text, nullable=False),
    Column("detail", Text),
    Column("accepted_at", DateTime(timezone=True)),
    Column("rejected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("rejected_signatures_petition_reason", "petition_id", "reason"),
)
