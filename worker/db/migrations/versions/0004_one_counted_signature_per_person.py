"""signatures: at most one *live* row (counted, or awaiting confirmation) per person and
petition, any number of uncounted ones

Revision ID: 0004
Revises: 0003

Before, every row held the person's `(canonical_email, petition_id)` slot, so a script that
signed with real people's addresses from one flooded IP (stored `fraudulent`) kept each of them
from ever being counted: their own signature later was a `duplicate`. Now only live rows take the
slot: `validated`, and `pending` (stored in email-confirmation mode until its signer follows the
link; migration 0005), so signing again while pending stores no second row and confirming
`pending -> validated` never meets one. One unique index still serves both needs: its third key
is `true` for a live row and NULL for any other (`fraudulent`, `invalidated`), and NULLs never
clash in a unique index, so only live rows can collide, while the index keeps every row and
still serves look-ups by person (`forget`, the reminders). A partial unique index (`WHERE state
IN ('validated', 'pending')`) would need a second index over all rows for those look-ups: one
index entry more per stored signature.

The drain's insert names the same three keys in `ON CONFLICT` (worker/drain/store.py).

Upgrading a large table: the new index is built under the table's lock, so writes wait for the
build. Plan a quiet moment, or first build it by hand with
`CREATE UNIQUE INDEX CONCURRENTLY signatures_one_counted_per_person ON signatures
(canonical_email, petition_id, (CASE WHEN state IN ('validated', 'pending') THEN true END))`;
this migration then finds it (`IF NOT EXISTS`) and only drops the old constraint, which takes a moment.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE UNIQUE INDEX IF NOT EXISTS signatures_one_counted_per_person
            ON signatures (
                canonical_email, petition_id, (CASE WHEN state IN ('validated', 'pending') THEN true END)
            );
        ALTER TABLE signatures DROP CONSTRAINT signatures_one_per_person;
        """
    )


def downgrade() -> None:
    # Fails (23505) while a person has several rows on one petition: decide which to keep first.
    op.execute(
        """
        ALTER TABLE signatures
            ADD CONSTRAINT signatures_one_per_person UNIQUE (canonical_email, petition_id);
        DROP INDEX signatures_one_counted_per_person;
        """
    )
