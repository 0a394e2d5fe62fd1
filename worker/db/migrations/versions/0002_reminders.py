"""reminder_deliveries, unsubscribes, and the index that finds reminder prospects

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per (person, petition) ever chosen for a reminder, written in the same statement
        -- that chooses them; the unique constraint makes a second email for the pair impossible.
        -- Personal data stays in `signatures`: the address is looked up at send time.
        CREATE TABLE reminder_deliveries (
            id bigserial PRIMARY KEY,
            petition_id bigint NOT NULL REFERENCES petitions (id),
            canonical_email text NOT NULL,
            run_id text NOT NULL,
            status text NOT NULL DEFAULT 'pending' CONSTRAINT reminder_deliveries_status
                CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz,
            CONSTRAINT reminder_deliveries_once UNIQUE (canonical_email, petition_id)
        );
        -- Retries due: only pending rows, so the index stays as small as the retry backlog.
        CREATE INDEX reminder_deliveries_due ON reminder_deliveries (next_attempt_at)
            WHERE status = 'pending';
        -- Where the walk over prospects stopped for each petition: the next run goes on from
        -- there instead of skipping again over everyone already reminded; at the end a new round
        -- starts. A round that found no one makes the petition idle: until REMINDER_MIN_INTERVAL
        -- has passed, runs look only at signatures newer than `idle_after_id`.
        CREATE TABLE reminder_cursors (
            petition_id bigint PRIMARY KEY REFERENCES petitions (id),
            after text NOT NULL DEFAULT '',
            round_start_id bigint,
            round_recorded bigint NOT NULL DEFAULT 0,
            idle_after_id bigint,
            idle_since timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE unsubscribes (
            canonical_email text PRIMARY KEY,
            unsubscribed_at timestamptz NOT NULL,
            moved_at timestamptz NOT NULL DEFAULT now()
        );
        -- Prospects are walked in canonical-email order, a page at a time, newest signature
        -- first per person: this partial index serves that walk without a sort.
        CREATE INDEX signatures_reminder_prospects
            ON signatures (canonical_email, accepted_at DESC)
            WHERE opt_in AND state = 'validated' AND canonical_email IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP INDEX signatures_reminder_prospects; DROP TABLE unsubscribes; DROP TABLE reminder_cursors; "
        "DROP TABLE reminder_deliveries;"
    )
