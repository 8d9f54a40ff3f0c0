"""Patrol tasks and the phone: working-day calendar, permit requirements, tasks, attachments,
submissions, findings, written notices and leads.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TASK_TYPES = (
    "address_check",
    "operation_check",
    "license_check",
    "unlicensed_lead",
    "annual_report_prompt",
    "license_display",
    "reinspection",
)
TASK_STATUSES = (
    "open",
    "assigned",
    "accepted",
    "in_progress",
    "submitted",
    "closed",
    "declined",
    "returned",
    "cancelled",
)


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE holiday_calendar (
            day date PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('holiday', 'workday')),
            name text
        );
        COMMENT ON TABLE holiday_calendar IS
            'official days off (holiday) and make-up working days on weekends (workday, 调休)';
        CREATE TABLE calendar_year (
            year integer PRIMARY KEY CHECK (year BETWEEN 1990 AND 2200),
            source text NOT NULL,
            loaded_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE permit_requirement (
            id bigserial PRIMARY KEY,
            industry_prefix text NOT NULL CHECK (industry_prefix ~ '^[0-9]{1,4}$'),
            permit_type text NOT NULL,
            note text,
            CONSTRAINT uq_permit_requirement UNIQUE (industry_prefix, permit_type)
        );

        CREATE TABLE lead (
            id bigserial PRIMARY KEY,
            kind text NOT NULL DEFAULT 'unlicensed_operation',
            description text NOT NULL,
            geom geometry(Point, 4490) NOT NULL,
            cell_code varchar(32),
            community_code varchar(12),
            town_code varchar(9),
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
            duplicate_of bigint REFERENCES lead(id),
            reported_by integer REFERENCES app_user(id),
            attachment_ids bigint[] NOT NULL DEFAULT '{}',
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_lead_geom ON lead USING gist (geom);
        CREATE INDEX ix_lead_open_kind ON lead (kind) WHERE status = 'open';

        CREATE TABLE patrol_task (
            id bigserial PRIMARY KEY,
            type text NOT NULL CHECK (type IN """
        + _in(TASK_TYPES)
        + """),
            status text NOT NULL DEFAULT 'open' CHECK (status IN """
        + _in(TASK_STATUSES)
        + """),
            origin text NOT NULL,
            campaign text,
            entity_id bigint REFERENCES market_entity(id),
            lead_id bigint REFERENCES lead(id),
            finding_id bigint,
            cell_code varchar(32),
            community_code varchar(12),
            town_code varchar(9),
            assignee_id integer REFERENCES app_user(id),
            due_on date NOT NULL,
            due_approximate boolean NOT NULL DEFAULT false,
            note text,
            status_reason text,
            checkin_at timestamptz,
            checkin_device_time timestamptz,
            checkin_geom geometry(Point, 4490),
            checkin_accuracy_m double precision,
            checkin_distance_m double precision,
            checkin_flag text,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            assigned_at timestamptz,
            submitted_at timestamptz,
            closed_at timestamptz,
            CONSTRAINT ck_patrol_task_subject CHECK (
                (entity_id IS NOT NULL OR lead_id IS NOT NULL)
                AND (lead_id IS NULL OR type IN ('unlicensed_lead', 'reinspection'))
                AND (type <> 'unlicensed_lead' OR lead_id IS NOT NULL)),
            CONSTRAINT ck_patrol_task_assignee CHECK (
                (status IN ('open', 'declined')) = (assignee_id IS NULL)
                OR status = 'cancelled' OR status = 'closed')
        );
        -- one live task per entity and type: generation is idempotent (ON CONFLICT DO NOTHING)
        CREATE UNIQUE INDEX uq_patrol_task_live ON patrol_task (entity_id, type)
            WHERE status NOT IN ('closed', 'cancelled') AND entity_id IS NOT NULL
              AND type <> 'reinspection';
        CREATE UNIQUE INDEX uq_patrol_task_live_reinspection ON patrol_task (finding_id)
            WHERE status NOT IN ('closed', 'cancelled') AND type = 'reinspection';
        CREATE UNIQUE INDEX uq_patrol_task_live_lead ON patrol_task (lead_id)
            WHERE status NOT IN ('closed', 'cancelled') AND lead_id IS NOT NULL;
        CREATE INDEX ix_patrol_task_assignee_live ON patrol_task (assignee_id)
            WHERE status IN ('assigned', 'accepted', 'in_progress', 'returned');
        CREATE INDEX ix_patrol_task_cell ON patrol_task (cell_code);
        CREATE INDEX ix_patrol_task_queue ON patrol_task (community_code)
            WHERE status IN ('open', 'declined');
        CREATE INDEX ix_patrol_task_entity ON patrol_task (entity_id, type);

        CREATE TABLE attachment (
            id bigserial PRIMARY KEY,
            sha256 char(64) NOT NULL,
            mime text NOT NULL CHECK (mime IN ('image/jpeg', 'image/png', 'image/heic')),
            size_bytes integer NOT NULL,
            width integer,
            height integer,
            taken_at timestamptz,
            exif_geom geometry(Point, 4490),
            storage_key text NOT NULL,
            uploaded_by integer NOT NULL REFERENCES app_user(id),
            uploaded_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_attachment_uploader_sha UNIQUE (uploaded_by, sha256)
        );

        CREATE TABLE submission (
            id uuid PRIMARY KEY,
            task_id bigint NOT NULL REFERENCES patrol_task(id),
            worker_id integer NOT NULL REFERENCES app_user(id),
            body_sha256 char(64) NOT NULL,
            outcome jsonb NOT NULL,
            geom geometry(Point, 4490),
            accuracy_m double precision,
            captured_at timestamptz,
            received_at timestamptz NOT NULL DEFAULT now(),
            attachment_ids bigint[] NOT NULL DEFAULT '{}',
            response jsonb NOT NULL
        );
        CREATE INDEX ix_submission_task ON submission (task_id);

        CREATE TABLE finding (
            id bigserial PRIMARY KEY,
            type text NOT NULL,
            permit_type text,
            task_id bigint NOT NULL REFERENCES patrol_task(id),
            submission_id uuid NOT NULL REFERENCES submission(id),
            entity_id bigint REFERENCES market_entity(id),
            lead_id bigint REFERENCES lead(id),
            details jsonb NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT 'open',
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ix_finding_task ON finding (task_id);
        CREATE INDEX ix_finding_entity ON finding (entity_id);
        ALTER TABLE patrol_task ADD CONSTRAINT fk_patrol_task_finding
            FOREIGN KEY (finding_id) REFERENCES finding(id);

        CREATE TABLE written_notice (
            id bigserial PRIMARY KEY,
            finding_id bigint NOT NULL UNIQUE REFERENCES finding(id),
            entity_id bigint REFERENCES market_entity(id),
            issued_on date NOT NULL,
            deadline date NOT NULL,
            deadline_approximate boolean NOT NULL DEFAULT false,
            reinspection_task_id bigint REFERENCES patrol_task(id),
            text text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE CONSTRAINT TRIGGER patrol_task_audited
            AFTER INSERT OR UPDATE OR DELETE ON patrol_task
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION gp_audit_required('task', 'id');
        CREATE CONSTRAINT TRIGGER lead_audited
            AFTER INSERT OR UPDATE OR DELETE ON lead
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION gp_audit_required('lead', 'id');

        -- generation rules run as background jobs too (options as JSON in `data`)
        ALTER TABLE entity_import_job DROP CONSTRAINT ck_entity_import_job_kind;
        ALTER TABLE entity_import_job ADD CONSTRAINT ck_entity_import_job_kind
            CHECK (kind IN ('registry', 'standard_addresses', 'task_rule'));
        """
    )
    seed_permit_requirements()


def seed_permit_requirements() -> None:
    """The permits each industry needs (backend/data/permit_requirements.csv), kept as data:
    admins change the table, later migrations may add rows."""
    import csv
    import io
    from importlib.resources import files

    text = (files("backend") / "data" / "permit_requirements.csv").read_text("utf-8")
    # the columns this migration knows (later ones, e.g. legal_basis, are 0017's)
    known = ("industry_prefix", "permit_type", "note")
    rows = [{k: r[k] for k in known} for r in csv.DictReader(io.StringIO(text))]
    table = sa.table(
        "permit_requirement",
        sa.column("industry_prefix", sa.Text),
        sa.column("permit_type", sa.Text),
        sa.column("note", sa.Text),
    )
    op.bulk_insert(table, rows)


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE written_notice;
        ALTER TABLE patrol_task DROP CONSTRAINT fk_patrol_task_finding;
        DROP TABLE finding;
        DROP TABLE submission;
        DROP TABLE attachment;
        DROP TABLE patrol_task;
        DROP TABLE lead;
        DROP TABLE permit_requirement;
        DROP TABLE calendar_year;
        DROP TABLE holiday_calendar;
        ALTER TABLE entity_import_job DROP CONSTRAINT ck_entity_import_job_kind;
        ALTER TABLE entity_import_job ADD CONSTRAINT ck_entity_import_job_kind
            CHECK (kind IN ('registry', 'standard_addresses'));
        """
    )
