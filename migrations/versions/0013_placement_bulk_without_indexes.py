"""The first (or a city-wide) placement writes 1.5 million rows into `entity_placement` with
neither of its indexes and builds both afterwards: measured on 1.5 M rows, INSERT with the
primary key 2.1–2.5 s + the `cell_code` index rebuilt 1.1 s, against INSERT into the bare heap
1.3 s + primary key 0.4 s + `cell_code` index 1.1 s (benchmarks/README.md, "assign").

Replaces 0008's `gp_placement_cell_index(boolean)` with `gp_placement_indexes(boolean)`, the
app role's only DDL, again through a SECURITY DEFINER function owned by the schema owner.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _grant(signature: str) -> None:
    app_role = context.config.get_main_option("gridpatrol.app_role")
    if app_role:
        quoted = '"' + app_role.replace('"', '""') + '"'
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {quoted}")


def upgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS gp_placement_cell_index(boolean)")
    op.execute(
        """
        CREATE FUNCTION gp_placement_indexes(present boolean) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            IF present THEN
                IF NOT EXISTS (SELECT 1 FROM pg_constraint
                               WHERE conname = 'pk_entity_placement'
                                 AND conrelid = 'entity_placement'::regclass) THEN
                    ALTER TABLE entity_placement
                        ADD CONSTRAINT pk_entity_placement PRIMARY KEY (entity_id);
                END IF;
                CREATE INDEX IF NOT EXISTS ix_entity_placement_cell
                    ON entity_placement (cell_code);
            ELSE
                DROP INDEX IF EXISTS ix_entity_placement_cell;
                ALTER TABLE entity_placement DROP CONSTRAINT IF EXISTS pk_entity_placement;
            END IF;
        END $$;
        REVOKE ALL ON FUNCTION gp_placement_indexes(boolean) FROM PUBLIC;
        COMMENT ON FUNCTION gp_placement_indexes(boolean) IS
            'Set entity_placement''s primary key and cell_code index aside (false) or build '
            'them (true), for the bulk placement; takes an exclusive lock until commit.';
        """
    )
    _grant("gp_placement_indexes(boolean)")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS gp_placement_indexes(boolean)")
    op.execute(
        """
        CREATE FUNCTION gp_placement_cell_index(present boolean) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            IF present THEN
                CREATE INDEX IF NOT EXISTS ix_entity_placement_cell
                    ON entity_placement (cell_code);
            ELSE
                DROP INDEX IF EXISTS ix_entity_placement_cell;
            END IF;
        END $$;
        REVOKE ALL ON FUNCTION gp_placement_cell_index(boolean) FROM PUBLIC;
        """
    )
    _grant("gp_placement_cell_index(boolean)")
