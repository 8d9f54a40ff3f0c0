"""The bulk placement may set the `cell_code` index aside while it writes 1.5 million rows and
build it again afterwards (maintaining it row by row costs more than the spatial join: measured
in benchmarks/README.md). Index DDL needs the table's owner, so the app role gets exactly this
one operation through a SECURITY DEFINER function, and nothing else.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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
    app_role = context.config.get_main_option("gridpatrol.app_role")
    if app_role:
        quoted = '"' + app_role.replace('"', '""') + '"'
        op.execute(f"GRANT EXECUTE ON FUNCTION gp_placement_cell_index(boolean) TO {quoted}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS gp_placement_cell_index(boolean)")
