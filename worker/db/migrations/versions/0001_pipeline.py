"""petitions, signatures, rejected_signatures

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE petitions (
            id bigserial PRIMARY KEY,
            slug text NOT NULL UNIQUE,
            title text NOT NULL,
            starter_name text NOT NULL,
            status text NOT NULL DEFAULT 'open'
                CONSTRAINT petitions_status CHECK (status IN ('open', 'closed', 'victory')),
            signature_count bigint NOT NULL DEFAULT 0,
            duplicate_count bigint NOT NULL DEFAULT 0,
            goal integer,
            created_at timestamptz NOT NULL DEFAULT now(),
            closed_at timestamptz
        );
        CREATE TABLE signatures (
            id bigserial PRIMARY KEY,
            petition_id bigint NOT NULL REFERENCES petitions (id),
            receipt text NOT NULL UNIQUE,
            email text,
            canonical_email text,
            name text NOT NULL,
            postcode text,
            country text,
            opt_in boolean NOT NULL DEFAULT false,
            ip_hash text,
            state text NOT NULL DEFAULT 'validated' CONSTRAINT signatures_state
                CHECK (state IN ('pending', 'validated', 'invalidated', 'fraudulent')),
            accepted_at timestamptz NOT NULL,
            persisted_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT signatures_one_per_person UNIQUE (petition_id, canonical_email)
        );
        CREATE INDEX signatures_canonical_email ON signatures (canonical_email);
        CREATE INDEX signatures_petition_accepted ON signatures (petition_id, accepted_at);
        CREATE TABLE rejected_signatures (
            id bigserial PRIMARY KEY,
            receipt text NOT NULL UNIQUE,
            petition_id bigint,
            reason text NOT NULL,
            detail text,
            accepted_at timestamptz,
            rejected_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX rejected_signatures_petition_reason
            ON rejected_signatures (petition_id, reason);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE rejected_signatures; DROP TABLE signatures; DROP TABLE petitions;")
