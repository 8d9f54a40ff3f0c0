"""Departments become data admins can add, change and deactivate (issue 13).

A department is never deleted (referrals and rules point at it); `active = false` takes it out
of routing and of the lists offered to users. Department rows are audited like rules: every
insert, update or delete needs an audit event in its transaction (the API, the CLI and the
service in backend/services/departments.py write one). Names are unique, ignoring case.

Outbox events get `policy_detail`: when the webhook policy (backend/services/webhook_policy.py)
refuses a delivery, `last_error` says only "refused by policy" and this column says which
address and why — shown to admins, not to auditors.

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
        CREATE UNIQUE INDEX uq_department_name ON department (lower(name));
        CREATE CONSTRAINT TRIGGER department_audited
            AFTER INSERT OR UPDATE OR DELETE ON department
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION gp_audit_required('department', 'code');
        ALTER TABLE outbox_event ADD COLUMN policy_detail text;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE outbox_event DROP COLUMN policy_detail;
        DROP TRIGGER department_audited ON department;
        DROP INDEX uq_department_name;
        ALTER TABLE department DROP COLUMN active;
        """
    )
