"""Changes to market entities need their audit events too (the registry is on the record).

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE CONSTRAINT TRIGGER market_entity_audited "
        "AFTER INSERT OR UPDATE OR DELETE ON market_entity "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        "EXECUTE FUNCTION gp_audit_required('entity', 'id')"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS market_entity_audited ON market_entity")
