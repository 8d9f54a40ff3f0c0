"""Accounts with territory, sessions and refresh tokens, login throttling, the cell roster,
and the append-only audit trail with its database-side guarantees.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:27:12.972514

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

# Audit rows are never changed: not by the app, not by a mistaken script.
APPEND_ONLY = """
CREATE FUNCTION gp_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_event_no_update_delete BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION gp_audit_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION gp_audit_append_only();
"""

# A change to an audited table cannot commit without an audit event for the same object in the
# same transaction (checked at commit: the trigger is deferred). Arguments: object type, and the
# column holding the object's id.
AUDIT_REQUIRED = """
CREATE FUNCTION gp_audit_required() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    object_key text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format('SELECT ($1).%I::text', TG_ARGV[1]) INTO object_key USING OLD;
    ELSE
        EXECUTE format('SELECT ($1).%I::text', TG_ARGV[1]) INTO object_key USING NEW;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM audit_event
        WHERE txid = txid_current() AND object_type = TG_ARGV[0] AND object_id = object_key
    ) THEN
        RAISE EXCEPTION '% of % % has no audit event in its transaction',
            lower(TG_OP), TG_ARGV[0], object_key USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
"""

AUDITED = (
    ("app_user", "user", "id"),
    ("cell_worker", "cell_roster", "cell_code"),
    ("city", "city", "code"),
    ("town", "town", "code"),
    ("community", "community", "code"),
    ("grid_cell", "cell", "code"),
    ("grid_import", "grid_import", "id"),
)


def grant_runtime_role(role: str) -> None:
    """The app serves as a role that owns nothing: it reads and writes rows, appends audit
    events, and can neither change those events nor disable the triggers that guard them."""
    quoted = '"' + role.replace('"', '""') + '"'
    op.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {quoted}"
    )
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_event FROM {quoted}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {quoted}")
    op.execute(f"GRANT SELECT ON alembic_version TO {quoted}")


# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_geospatial_table(
        "audit_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column(
            "txid", sa.BigInteger(), server_default=sa.text("txid_current()"), nullable=False
        ),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor_username", sa.Text(), nullable=False),
        sa.Column("actor_role", sa.Text(), nullable=False),
        sa.Column("client_addr", sa.Text(), nullable=True),
        sa.Column(
            "device_location",
            Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("object_id", sa.Text(), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["app_user.id"], name=op.f("fk_audit_event_actor_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(
        "ix_audit_event_actor", "audit_event", ["actor_user_id", "occurred_at"], unique=False
    )
    op.create_index(
        "ix_audit_event_object",
        "audit_event",
        ["object_type", "object_id", "occurred_at"],
        unique=False,
    )
    op.create_index("ix_audit_event_occurred_at", "audit_event", ["occurred_at"], unique=False)
    op.create_index(
        "ix_audit_event_txid", "audit_event", ["txid", "object_type", "object_id"], unique=False
    )
    op.create_table(
        "auth_session",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.Column("client_addr", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_auth_session_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_session")),
    )
    op.create_index(op.f("ix_auth_session_user_id"), "auth_session", ["user_id"], unique=False)
    op.create_table(
        "cell_worker",
        sa.Column("cell_code", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("duty", sa.String(length=8), nullable=False),
        sa.Column(
            "assigned_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("duty IN ('primary', 'backup')", name=op.f("ck_cell_worker_duty")),
        sa.ForeignKeyConstraint(
            ["cell_code"], ["grid_cell.code"], name=op.f("fk_cell_worker_cell_code_grid_cell")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_cell_worker_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("cell_code", "user_id", name=op.f("pk_cell_worker")),
    )
    op.create_index("ix_cell_worker_user_id", "cell_worker", ["user_id"], unique=False)
    op.create_index(
        "uq_cell_worker_primary_per_cell",
        "cell_worker",
        ["cell_code"],
        unique=True,
        postgresql_where="duty = 'primary'",
    )
    op.create_index(
        "uq_cell_worker_primary_per_worker",
        "cell_worker",
        ["user_id"],
        unique=True,
        postgresql_where="duty = 'primary'",
    )
    op.create_table(
        "refresh_token",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_session.id"],
            name=op.f("fk_refresh_token_session_id_auth_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_token_token_hash")),
    )
    op.create_index(
        op.f("ix_refresh_token_session_id"), "refresh_token", ["session_id"], unique=False
    )
    op.add_column("app_user", sa.Column("department_code", sa.String(length=32), nullable=True))
    op.add_column("app_user", sa.Column("phone", sa.String(length=32), nullable=True))
    op.add_column(
        "app_user", sa.Column("version", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "app_user",
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_foreign_key(
        op.f("fk_app_user_community_code_community"),
        "app_user",
        "community",
        ["community_code"],
        ["code"],
    )
    op.create_foreign_key(
        op.f("fk_app_user_town_code_town"), "app_user", "town", ["town_code"], ["code"]
    )
    op.create_check_constraint(
        "town_scope", "app_user", "role <> 'town_dispatcher' OR town_code IS NOT NULL"
    )
    op.create_check_constraint(
        "community_scope",
        "app_user",
        "role <> 'community_dispatcher' OR community_code IS NOT NULL",
    )
    op.create_check_constraint(
        "department_scope",
        "app_user",
        "role <> 'department_officer' OR department_code IS NOT NULL",
    )
    op.execute(APPEND_ONLY)
    op.execute(AUDIT_REQUIRED)
    for table, object_type, key in AUDITED:
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {table}_audited "
            f"AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            f"EXECUTE FUNCTION gp_audit_required('{object_type}', '{key}')"
        )
    app_role = context.config.get_main_option("gridpatrol.app_role")
    if app_role:
        grant_runtime_role(app_role)


def downgrade() -> None:
    """Downgrade schema."""
    for table, _, _ in AUDITED:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_audited ON {table}")
    op.execute("DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_event")
    op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
    op.execute("DROP FUNCTION IF EXISTS gp_audit_required()")
    op.execute("DROP FUNCTION IF EXISTS gp_audit_append_only()")
    for name in ("town_scope", "community_scope", "department_scope"):
        op.drop_constraint(op.f(f"ck_app_user_{name}"), "app_user", type_="check")
    op.drop_constraint(op.f("fk_app_user_town_code_town"), "app_user", type_="foreignkey")
    op.drop_constraint(op.f("fk_app_user_community_code_community"), "app_user", type_="foreignkey")
    op.drop_column("app_user", "updated_at")
    op.drop_column("app_user", "version")
    op.drop_column("app_user", "phone")
    op.drop_column("app_user", "department_code")
    op.drop_index(op.f("ix_refresh_token_session_id"), table_name="refresh_token")
    op.drop_table("refresh_token")
    op.drop_index(
        "uq_cell_worker_primary_per_worker",
        table_name="cell_worker",
        postgresql_where="duty = 'primary'",
    )
    op.drop_index(
        "uq_cell_worker_primary_per_cell",
        table_name="cell_worker",
        postgresql_where="duty = 'primary'",
    )
    op.drop_index("ix_cell_worker_user_id", table_name="cell_worker")
    op.drop_table("cell_worker")
    op.drop_index(op.f("ix_auth_session_user_id"), table_name="auth_session")
    op.drop_table("auth_session")
    op.drop_index("ix_audit_event_txid", table_name="audit_event")
    op.drop_index("ix_audit_event_occurred_at", table_name="audit_event")
    op.drop_index("ix_audit_event_object", table_name="audit_event")
    op.drop_index("ix_audit_event_actor", table_name="audit_event")
    op.drop_geospatial_table("audit_event")
    op.drop_table("login_throttle")
