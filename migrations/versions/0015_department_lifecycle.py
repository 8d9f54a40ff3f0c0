"""Departments become data admins can add, change and deactivate (issue 13).

A department is never deleted (referrals and rules point at it); `active = false` takes it out
of routing and of the lists offered to users. Department rows are audited like rules.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE department ADD COLUMN active boolean NOT NULL DEFAULT true;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE department DROP COLUMN active")
