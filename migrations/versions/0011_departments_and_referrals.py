"""Departments, routing rules as data, referrals (移送) and the outbox to departments' systems.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFERRAL_STATUSES = (
    "pending",
    "delivered",
    "accepted",
    "returned",
    "in_progress",
    "concluded",
    "closed",
)


def upgrade() -> None:
    statuses = ", ".join(f"'{s}'" for s in REFERRAL_STATUSES)
    op.execute(
        f"""
        CREATE TABLE department (
            code varchar(32) PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{{1,31}}$'),
            name text NOT NULL,
            town_branches boolean NOT NULL DEFAULT false,
            webhook_url text CHECK (webhook_url IS NULL OR webhook_url ~ '^https?://'),
            webhook_secret text,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE routing_rule (
            id bigserial PRIMARY KEY,
            finding_type text NOT NULL,
            permit_type text,
            industry_prefix text CHECK (industry_prefix IS NULL
                                        OR industry_prefix ~ '^[0-9]{{1,4}}$'),
            department_code varchar(32) NOT NULL REFERENCES department(code),
            time_limit_days integer NOT NULL CHECK (time_limit_days BETWEEN 1 AND 365),
            priority integer NOT NULL DEFAULT 0,
            active boolean NOT NULL DEFAULT true,
            misses integer NOT NULL DEFAULT 0,
            note text,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX uq_routing_rule_key ON routing_rule
            (finding_type, COALESCE(permit_type, ''), COALESCE(industry_prefix, ''))
            WHERE active;

        CREATE TABLE referral (
            id bigserial PRIMARY KEY,
            finding_id bigint NOT NULL REFERENCES finding(id),
            entity_id bigint REFERENCES market_entity(id),
            lead_id bigint REFERENCES lead(id),
            department_code varchar(32) NOT NULL REFERENCES department(code),
            town_code varchar(9),
            rule_id bigint REFERENCES routing_rule(id),
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ({statuses})),
            due_on date NOT NULL,
            due_approximate boolean NOT NULL DEFAULT false,
            result text CHECK (result IS NULL OR result IN ('case_opened', 'permit_issued',
                'rectified', 'no_violation', 'listed_abnormal', 'closed_down', 'other')),
            case_number text,
            note text,
            status_reason text,
            reinspection_task_id bigint REFERENCES patrol_task(id),
            escalation text CHECK (escalation IS NULL OR escalation IN ('yellow', 'red')),
            escalated_at timestamptz,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            concluded_at timestamptz,
            closed_at timestamptz
        );
        -- one live referral per finding
        CREATE UNIQUE INDEX uq_referral_live ON referral (finding_id) WHERE status <> 'closed';
        CREATE INDEX ix_referral_inbox ON referral (department_code, town_code, status);
        CREATE INDEX ix_referral_due ON referral (due_on)
            WHERE status NOT IN ('concluded', 'closed');

        CREATE TABLE outbox_event (
            id bigserial PRIMARY KEY,
            event_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
            department_code varchar(32) REFERENCES department(code),
            event_type text NOT NULL,
            payload jsonb NOT NULL,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'dead', 'skipped')),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz
        );
        CREATE INDEX ix_outbox_due ON outbox_event (next_attempt_at) WHERE status = 'pending';

        ALTER TABLE patrol_task
            ADD COLUMN escalation text
                CHECK (escalation IS NULL OR escalation IN ('yellow', 'red')),
            ADD COLUMN escalated_at timestamptz;

        CREATE CONSTRAINT TRIGGER referral_audited
            AFTER INSERT OR UPDATE OR DELETE ON referral
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION gp_audit_required('referral', 'id');
        CREATE CONSTRAINT TRIGGER routing_rule_audited
            AFTER INSERT OR UPDATE OR DELETE ON routing_rule
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION gp_audit_required('routing_rule', 'id');
        """
    )
    seed()


def seed() -> None:
    """Departments and the common routing rules (backend/data/*.csv): data, editable by
    admins; the seed's own audit events say where they came from."""
    import csv
    import io
    from importlib.resources import files

    def rows(name: str) -> list[dict[str, str]]:
        text = (files("backend") / "data" / name).read_text("utf-8")
        return list(csv.DictReader(io.StringIO(text)))

    op.bulk_insert(
        sa.table("department", sa.column("code"), sa.column("name"), sa.column("town_branches")),
        [
            {"code": r["code"], "name": r["name"], "town_branches": r["town_branches"] == "true"}
            for r in rows("departments.csv")
        ],
    )
    rules = [
        {
            "finding_type": r["finding_type"],
            "permit_type": r["permit_type"] or None,
            "industry_prefix": r["industry_prefix"] or None,
            "department_code": r["department"],
            "time_limit_days": int(r["time_limit_days"]),
            "priority": int(r["priority"]),
            "note": r["note"] or None,
        }
        for r in rows("routing_rules.csv")
    ]
    op.bulk_insert(
        sa.table(
            "routing_rule",
            *(sa.column(c) for c in rules[0]),
        ),
        rules,
    )
    op.execute(
        "INSERT INTO audit_event (actor_username, actor_role, action, object_type, object_id, "
        "changes) SELECT 'migration 0011', 'system', 'create', 'routing_rule', id::text, "
        "jsonb_build_object('source', jsonb_build_object('from', NULL, 'to', "
        "'backend/data/routing_rules.csv')) FROM routing_rule"
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE outbox_event;
        DROP TABLE referral;
        ALTER TABLE patrol_task DROP COLUMN escalation, DROP COLUMN escalated_at;
        DROP TABLE routing_rule;
        DROP TABLE department;
        """
    )
