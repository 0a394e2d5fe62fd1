"""email-confirmed signatures: a per-petition mode, the petition's own words, and the
bookkeeping of confirmation emails

Revision ID: 0005
Revises: 0004

- `petitions.awaiting_count`: pending signatures, kept in the same transactions that store,
  confirm, expire or erase them (as `signature_count` is).
- `petitions.confirm_email`: signatures to this petition are stored `pending` and counted only
  once their signer follows the emailed link. `body` and `target` are the petition's text and
  its decision maker, shown on its page.
- `signatures.confirm_sent_at` (NULL: the confirmation email is owed), `confirm_reminded_at`
  (the one reminder to confirm went out) and `confirmed_at`. Nullable without a default, so
  adding them rewrites nothing.
- Two partial indexes over pending rows only (a small, short-lived set): the unsent-email
  backlog, and pending rows by age for the reminder and expiry.
- `refused_confirmations`: a confirmation whose signature is expired, erased or unknown, with
  the reason (one row per receipt).
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE petitions
            ADD COLUMN confirm_email boolean NOT NULL DEFAULT false,
            ADD COLUMN body text,
            ADD COLUMN target text,
            ADD COLUMN awaiting_count bigint NOT NULL DEFAULT 0;
        ALTER TABLE signatures
            ADD COLUMN confirm_sent_at timestamptz,
            ADD COLUMN confirm_reminded_at timestamptz,
            ADD COLUMN confirmed_at timestamptz;
        CREATE INDEX signatures_confirm_unsent ON signatures (id)
            WHERE state = 'pending' AND confirm_sent_at IS NULL;
        CREATE INDEX signatures_pending_accepted ON signatures (accepted_at)
            WHERE state = 'pending';
        CREATE TABLE refused_confirmations (
            id bigserial PRIMARY KEY,
            receipt text NOT NULL UNIQUE,
            petition_id bigint,
            reason text NOT NULL,
            refused_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE refused_confirmations;
        DROP INDEX signatures_pending_accepted;
        DROP INDEX signatures_confirm_unsent;
        ALTER TABLE signatures
            DROP COLUMN confirmed_at,
            DROP COLUMN confirm_reminded_at,
            DROP COLUMN confirm_sent_at;
        ALTER TABLE petitions
            DROP COLUMN awaiting_count, DROP COLUMN target, DROP COLUMN body, DROP COLUMN confirm_email;
        """
    )
