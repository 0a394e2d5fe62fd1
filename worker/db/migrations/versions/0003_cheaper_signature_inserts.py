"""signatures: one index fewer, and the petition reference checked once per statement

Revision ID: 0003
Revises: 0002

Two costs of every stored signature (BENCHMARKS.md, "Profile, round 3"):
- The person's unique key now leads with `canonical_email`, so it also serves look-ups by
  person (`forget`, the reminders' later opt-outs and addresses) and the separate
  `signatures_canonical_email` index goes: one index entry fewer per row.
- The foreign key to `petitions` ran one look-up and one row lock per inserted row (~10 µs of
  PostgreSQL CPU each). Triggers now do the same checks once per statement: every petition the
  inserted rows name must exist, and it is locked `FOR KEY SHARE` until the transaction ends, as
  the foreign key did (a petition cannot be deleted or change id under a signature, and a count
  repair still waits for a batch that is inserting; see worker/integrity/reconcile.py). The
  error is the foreign key's: SQLSTATE 23503.

Upgrading a large table: the new unique index is built under the table's lock, so writes wait
for the build. Plan a quiet moment, or first build it by hand with `CREATE UNIQUE INDEX
CONCURRENTLY signatures_one_per_person_new ON signatures (canonical_email, petition_id)` and
change this migration to attach it (`ADD CONSTRAINT ... UNIQUE USING INDEX`).
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE signatures DROP CONSTRAINT signatures_one_per_person;
        ALTER TABLE signatures
            ADD CONSTRAINT signatures_one_per_person UNIQUE (canonical_email, petition_id);
        DROP INDEX signatures_canonical_email;

        ALTER TABLE signatures DROP CONSTRAINT signatures_petition_id_fkey;

        -- Inserted rows: lock their petitions in id order (KEY SHARE, as the foreign key did),
        -- and refuse the statement if one of them does not exist.
        CREATE FUNCTION signatures_petitions_exist() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            wanted bigint[];
            locked bigint;
        BEGIN
            SELECT array_agg(DISTINCT petition_id) INTO wanted FROM new_rows;
            SELECT count(*) INTO locked FROM (
                SELECT 1 FROM petitions WHERE id = ANY(wanted) ORDER BY id FOR KEY SHARE
            ) held;
            IF locked <> coalesce(cardinality(wanted), 0) THEN
                RAISE EXCEPTION 'insert or update on table "signatures" violates the petition reference'
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER signatures_petitions_exist AFTER INSERT ON signatures
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION signatures_petitions_exist();

        -- A row moved to another petition (nothing does this today): the same check, per row.
        CREATE FUNCTION signatures_moved_petition_exists() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM 1 FROM petitions WHERE id = NEW.petition_id FOR KEY SHARE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'insert or update on table "signatures" violates the petition reference'
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER signatures_moved_petition_exists AFTER UPDATE OF petition_id ON signatures
            FOR EACH ROW WHEN (OLD.petition_id IS DISTINCT FROM NEW.petition_id)
            EXECUTE FUNCTION signatures_moved_petition_exists();

        -- A petition with signatures cannot be deleted or change id (the foreign key's NO ACTION).
        CREATE FUNCTION petitions_keep_signed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM signatures WHERE petition_id = OLD.id) THEN
                RAISE EXCEPTION
                    'update or delete on table "petitions" violates the petition reference of "signatures"'
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER petitions_keep_signed_delete AFTER DELETE ON petitions
            FOR EACH ROW EXECUTE FUNCTION petitions_keep_signed();
        CREATE TRIGGER petitions_keep_signed_update AFTER UPDATE OF id ON petitions
            FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
            EXECUTE FUNCTION petitions_keep_signed();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER petitions_keep_signed_update ON petitions;
        DROP TRIGGER petitions_keep_signed_delete ON petitions;
        DROP FUNCTION petitions_keep_signed();
        DROP TRIGGER signatures_moved_petition_exists ON signatures;
        DROP FUNCTION signatures_moved_petition_exists();
        DROP TRIGGER signatures_petitions_exist ON signatures;
        DROP FUNCTION signatures_petitions_exist();
        ALTER TABLE signatures ADD CONSTRAINT signatures_petition_id_fkey
            FOREIGN KEY (petition_id) REFERENCES petitions (id);
        CREATE INDEX signatures_canonical_email ON signatures (canonical_email);
        ALTER TABLE signatures DROP CONSTRAINT signatures_one_per_person;
        ALTER TABLE signatures
            ADD CONSTRAINT signatures_one_per_person UNIQUE (petition_id, canonical_email);
        """
    )
