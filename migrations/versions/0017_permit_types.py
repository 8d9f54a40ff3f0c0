"""Permit types as a code list; seed data corrections with their legal basis (issue 13).

- `permit_type` (code, name, aliases, issuing department, legal basis), seeded from
  backend/data/permit_types.csv. `routing_rule.permit_type`, `permit_requirement.permit_type`
  and `finding.permit_type` hold its codes from now on: existing names and aliases are mapped
  to codes; a rule's or requirement's text that names no known permit becomes a permit type of
  its own (`LEGACY_n`, so nothing stops routing); a finding's unknown text stays as it was (the
  finding's foreign key is then left NOT VALID: new findings are checked, old ones kept).
- `legal_basis` on department, routing_rule and permit_requirement.
- Corrections for Dongguan (docs/permits.md): drug retail is supervised by 市场监督管理局
  (rules at DRUG move to SAMR; DRUG is kept, inactive: referrals point at it); 成品油零售经营
  批准证书 is the commerce bureau's (COMMERCE); a petrol station also needs 危险化学品经营许可证;
  食用农产品 and pre-packaged-only food need no 食品经营许可 (requirement rows removed).

A fresh database runs 0009/0011 on the current CSV files and then this; a database migrated on
the earlier files ends in the same seed state: everything below reconciles to the CSV files by
natural key and does nothing the second time. A rule whose department the CSV corrects is
rewritten whole; other rules (perhaps tuned by admins) only get their legal basis. Every
change to an audited table comes with its audit event.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTOR = "migration 0017"
SOURCE = "backend/data/"

#: departments no longer in departments.csv: kept inactive (referrals may point at them)
RETIRED_DEPARTMENTS = {
    "DRUG": (
        "东莞市药品监督管理局",
        "不单设：东莞的药品零售由东莞市市场监督管理局监管（《中华人民共和国药品管理法》"
        "第五十一条）",
    ),
}
#: where the live rules of a retired department go
SUCCESSOR = {"DRUG": "SAMR"}
#: seeded permit requirements this migration removes (why: docs/permits.md)
RETIRED_REQUIREMENTS = (
    ("5223", "FOOD_BUSINESS"),  # 果品、蔬菜: 食用农产品 (食品安全法 第三十五条)
    ("5224", "FOOD_BUSINESS"),  # 肉禽蛋奶水产品: 食用农产品 / pre-packaged
    ("5225", "FOOD_BUSINESS"),  # 营养和保健品: pre-packaged only → 备案
    ("5226", "FOOD_BUSINESS"),  # 酒、饮料及茶叶: pre-packaged only → 备案
    ("5411", "ROAD_TRANSPORT"),  # 城市公交: 线路经营权, not 道路运输经营许可证
    ("8394", "PRIVATE_SCHOOL"),  # 教育辅助服务: no teaching, no 办学许可
)


def _rows(name: str) -> list[dict[str, str]]:
    from importlib.resources import files

    text = (files("backend") / "data" / name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _key(value: str) -> str:
    """How permit texts are compared: NFKC (full-width brackets = ASCII), no whitespace,
    upper case (codes)."""
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


def _audit(action: str, object_type: str, object_id: Any, changes: dict[str, Any]) -> None:
    op.get_bind().execute(
        sa.text(
            "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
            "object_id, changes) VALUES (:actor, 'system', :action, :type, :id, "
            "CAST(:changes AS jsonb))"
        ),
        {
            "actor": ACTOR,
            "action": action,
            "type": object_type,
            "id": str(object_id),
            "changes": json.dumps(changes, ensure_ascii=False, default=str),
        },
    )


def _created(values: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        **{k: {"from": None, "to": v} for k, v in values.items()},
        "source": {"from": None, "to": SOURCE + source},
    }


def _update(table: str, key_column: str, key: Any, changes: dict[str, Any]) -> None:
    """UPDATE one row (version + 1) and its audit event."""
    sets = ", ".join(f"{c} = :{c}" for c in changes)
    op.get_bind().execute(
        sa.text(
            f"UPDATE {table} SET {sets}, version = version + 1, updated_at = now() "
            f"WHERE {key_column} = :key"
        ),
        {**{c: v["to"] for c, v in changes.items()}, "key": key},
    )
    object_type = {"routing_rule": "routing_rule", "department": "department"}[table]
    _audit("update", object_type, key, changes)


def _settle_deferred() -> None:
    """Run the deferred audit checks of this transaction's earlier writes now (all migrations
    share one transaction, and ALTER TABLE refuses a table with pending trigger events), then
    defer them again (every deferrable constraint here is INITIALLY DEFERRED)."""
    op.execute("SET CONSTRAINTS ALL IMMEDIATE")
    op.execute("SET CONSTRAINTS ALL DEFERRED")


def upgrade() -> None:
    conn = op.get_bind()
    _settle_deferred()
    op.execute(
        """
        ALTER TABLE department ADD COLUMN legal_basis text;
        ALTER TABLE routing_rule ADD COLUMN legal_basis text;
        ALTER TABLE permit_requirement ADD COLUMN legal_basis text;
        COMMENT ON COLUMN routing_rule.legal_basis IS 'the law that makes it this department''s';
        """
    )
    _reconcile_departments(conn)
    op.execute(
        """
        CREATE TABLE permit_type (
            code varchar(32) PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{1,31}$'),
            name text NOT NULL,
            aliases text[] NOT NULL DEFAULT '{}',
            department_code varchar(32) NOT NULL REFERENCES department(code),
            legal_basis text,
            active boolean NOT NULL DEFAULT true,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX uq_permit_type_name ON permit_type (name);
        COMMENT ON TABLE permit_type IS
            'permits (许可证) as a code list: department_code issues it (谁审批、谁监管)';
        COMMENT ON COLUMN permit_type.aliases IS
            'other names accepted from clients and registries, normalised to the code';
        CREATE CONSTRAINT TRIGGER permit_type_audited
            AFTER INSERT OR UPDATE OR DELETE ON permit_type
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION gp_audit_required('permit_type', 'code');
        """
    )
    lookup = _seed_permit_types(conn)
    _map_rules(conn, lookup)
    _map_requirements(conn, lookup)
    unknown_findings = _map_findings(conn, lookup)
    _reconcile_rules(conn)
    _retire_departments(conn)
    _reconcile_requirements(conn)
    _settle_deferred()
    op.execute(
        """
        ALTER TABLE routing_rule ADD CONSTRAINT fk_routing_rule_permit_type
            FOREIGN KEY (permit_type) REFERENCES permit_type(code);
        ALTER TABLE permit_requirement ADD CONSTRAINT fk_permit_requirement_permit_type
            FOREIGN KEY (permit_type) REFERENCES permit_type(code);
        CREATE INDEX ix_permit_requirement_permit_type ON permit_requirement (permit_type);
        ALTER TABLE finding ADD CONSTRAINT fk_finding_permit_type
            FOREIGN KEY (permit_type) REFERENCES permit_type(code) NOT VALID;
        """
    )
    if not unknown_findings:
        op.execute("ALTER TABLE finding VALIDATE CONSTRAINT fk_finding_permit_type")


def _reconcile_departments(conn: Any) -> None:
    """Insert the departments the CSV adds; give the others their legal basis."""
    for r in _rows("departments.csv"):
        row = conn.execute(
            sa.text("SELECT legal_basis FROM department WHERE code = :c"), {"c": r["code"]}
        ).first()
        basis = r["legal_basis"] or None
        if row is None:
            values = {
                "code": r["code"],
                "name": r["name"],
                "town_branches": r["town_branches"] == "true",
                "legal_basis": basis,
            }
            conn.execute(
                sa.text(
                    "INSERT INTO department (code, name, town_branches, legal_basis) "
                    "VALUES (:code, :name, :town_branches, :legal_basis)"
                ),
                values,
            )
            _audit("create", "department", r["code"], _created(values, "departments.csv"))
        elif row.legal_basis != basis:
            _update(
                "department",
                "code",
                r["code"],
                {"legal_basis": {"from": row.legal_basis, "to": basis}},
            )


def _retire_departments(conn: Any) -> None:
    """Retired departments exist (old referrals name them) and are inactive; their live rules
    went to their successor first."""
    for code, (name, basis) in RETIRED_DEPARTMENTS.items():
        for rule in conn.execute(
            sa.text(
                "SELECT id FROM routing_rule WHERE active AND department_code = :d ORDER BY id"
            ),
            {"d": code},
        ).all():
            _update(
                "routing_rule",
                "id",
                rule.id,
                {"department_code": {"from": code, "to": SUCCESSOR[code]}},
            )
        row = conn.execute(
            sa.text("SELECT active, legal_basis FROM department WHERE code = :c"), {"c": code}
        ).first()
        if row is None:
            values = {"code": code, "name": name, "town_branches": False, "active": False}
            values["legal_basis"] = basis
            conn.execute(
                sa.text(
                    "INSERT INTO department (code, name, town_branches, active, legal_basis) "
                    "VALUES (:code, :name, :town_branches, :active, :legal_basis)"
                ),
                values,
            )
            _audit("create", "department", code, _created(values, "departments.csv (retired)"))
        else:
            changes = {}
            if row.active:
                changes["active"] = {"from": True, "to": False}
            if row.legal_basis != basis:
                changes["legal_basis"] = {"from": row.legal_basis, "to": basis}
            if changes:
                _update("department", "code", code, changes)


def _seed_permit_types(conn: Any) -> dict[str, str]:
    """The code list from permit_types.csv; answers {normalised text: code}."""
    lookup: dict[str, str] = {}
    for r in _rows("permit_types.csv"):
        aliases = [a for a in r["aliases"].split("|") if a]
        values = {
            "code": r["code"],
            "name": r["name"],
            "aliases": aliases,
            "department_code": r["department"],
            "legal_basis": r["legal_basis"] or None,
        }
        conn.execute(
            sa.text(
                "INSERT INTO permit_type (code, name, aliases, department_code, legal_basis) "
                "VALUES (:code, :name, :aliases, :department_code, :legal_basis)"
            ),
            values,
        )
        _audit("create", "permit_type", r["code"], _created(values, "permit_types.csv"))
        for text in (r["code"], r["name"], *aliases):
            lookup.setdefault(_key(text), r["code"])
    return lookup


def _legacy_code(conn: Any, lookup: dict[str, str], text: str, department: str) -> str:
    """A permit type for a rule's or requirement's text that names no known permit."""
    n = 1 + (conn.scalar(sa.text("SELECT count(*) FROM permit_type WHERE code ~ '^LEGACY_'")) or 0)
    code = f"LEGACY_{n}"
    values = {"code": code, "name": text, "department_code": department}
    conn.execute(
        sa.text(
            "INSERT INTO permit_type (code, name, department_code) "
            "VALUES (:code, :name, :department_code)"
        ),
        values,
    )
    _audit("create", "permit_type", code, _created(values, "an earlier permit name"))
    lookup[_key(text)] = code
    return code


def _map_rules(conn: Any, lookup: dict[str, str]) -> None:
    """Rules name permit codes; of two live rules that now say the same, the older stays."""
    rules = conn.execute(
        sa.text(
            "SELECT id, finding_type, permit_type, industry_prefix, department_code, active "
            "FROM routing_rule WHERE permit_type IS NOT NULL ORDER BY id"
        )
    ).all()
    live: set[tuple[Any, ...]] = {
        (r.finding_type, r.permit_type, r.industry_prefix)
        for r in rules
        if r.active and lookup.get(_key(r.permit_type)) == r.permit_type
    }
    for r in rules:
        code = lookup.get(_key(r.permit_type))
        if code is None:
            department = r.department_code if r.finding_type == "permit_missing" else "SAMR"
            code = _legacy_code(conn, lookup, r.permit_type, department)
        if code == r.permit_type:
            continue
        changes: dict[str, Any] = {"permit_type": {"from": r.permit_type, "to": code}}
        key = (r.finding_type, code, r.industry_prefix)
        if r.active and key in live:
            changes["active"] = {"from": True, "to": False}
        elif r.active:
            live.add(key)
        _update("routing_rule", "id", r.id, changes)


def _map_requirements(conn: Any, lookup: dict[str, str]) -> None:
    rows = conn.execute(
        sa.text("SELECT id, industry_prefix, permit_type FROM permit_requirement ORDER BY id")
    ).all()
    for r in rows:
        code = lookup.get(_key(r.permit_type))
        if code is None:
            code = _legacy_code(conn, lookup, r.permit_type, "SAMR")
        if code == r.permit_type:
            continue
        taken = conn.scalar(
            sa.text(
                "SELECT 1 FROM permit_requirement WHERE industry_prefix = :i AND permit_type = :p"
            ),
            {"i": r.industry_prefix, "p": code},
        )
        if taken:
            conn.execute(sa.text("DELETE FROM permit_requirement WHERE id = :id"), {"id": r.id})
        else:
            conn.execute(
                sa.text("UPDATE permit_requirement SET permit_type = :p WHERE id = :id"),
                {"p": code, "id": r.id},
            )


def _map_findings(conn: Any, lookup: dict[str, str]) -> int:
    """Findings' permit texts to codes; answers how many distinct texts stay unknown."""
    unknown = 0
    for (text,) in conn.execute(
        sa.text("SELECT DISTINCT permit_type FROM finding WHERE permit_type IS NOT NULL")
    ).all():
        code = lookup.get(_key(text))
        if code is None:
            unknown += 1
        elif code != text:
            conn.execute(
                sa.text("UPDATE finding SET permit_type = :c WHERE permit_type = :t"),
                {"c": code, "t": text},
            )
    return unknown


_RULE_VALUES = ("department_code", "time_limit_days", "priority", "note", "legal_basis")


def _reconcile_rules(conn: Any) -> None:
    """Every rule of routing_rules.csv exists (live); a rule whose department the CSV
    corrects takes the CSV's values; the others get their legal basis."""
    for r in _rows("routing_rules.csv"):
        want = {
            "department_code": r["department"],
            "time_limit_days": int(r["time_limit_days"]),
            "priority": int(r["priority"]),
            "note": r["note"] or None,
            "legal_basis": r["legal_basis"] or None,
        }
        key = {
            "finding_type": r["finding_type"],
            "permit_type": r["permit_type"] or None,
            "industry_prefix": r["industry_prefix"] or None,
        }
        row = (
            conn.execute(
                sa.text(
                    f"SELECT id, {', '.join(_RULE_VALUES)} FROM routing_rule WHERE active "
                    "AND finding_type = :finding_type "
                    "AND permit_type IS NOT DISTINCT FROM CAST(:permit_type AS text) "
                    "AND industry_prefix IS NOT DISTINCT FROM CAST(:industry_prefix AS text)"
                ),
                key,
            )
            .mappings()
            .first()
        )
        if row is None:
            values = {**key, **want}
            rule_id = conn.scalar(
                sa.text(
                    f"INSERT INTO routing_rule ({', '.join(values)}) VALUES "
                    f"({', '.join(':' + c for c in values)}) RETURNING id"
                ),
                values,
            )
            _audit("create", "routing_rule", rule_id, _created(values, "routing_rules.csv"))
            continue
        if row["department_code"] != want["department_code"]:
            fields = _RULE_VALUES
        elif row["legal_basis"] is None:
            fields = ("legal_basis",)
        else:
            fields = ()
        changes = {c: {"from": row[c], "to": want[c]} for c in fields if row[c] != want[c]}
        if changes:
            _update("routing_rule", "id", row["id"], changes)


def _reconcile_requirements(conn: Any) -> None:
    for prefix, code in RETIRED_REQUIREMENTS:
        conn.execute(
            sa.text(
                "DELETE FROM permit_requirement WHERE industry_prefix = :i AND permit_type = :p"
            ),
            {"i": prefix, "p": code},
        )
    for r in _rows("permit_requirements.csv"):
        conn.execute(
            sa.text(
                "INSERT INTO permit_requirement (industry_prefix, permit_type, note, legal_basis) "
                "VALUES (:i, :p, :n, :b) ON CONFLICT (industry_prefix, permit_type) DO UPDATE "
                "SET note = EXCLUDED.note, legal_basis = EXCLUDED.legal_basis "
                "WHERE (permit_requirement.note, permit_requirement.legal_basis) "
                "IS DISTINCT FROM (EXCLUDED.note, EXCLUDED.legal_basis)"
            ),
            {
                "i": r["industry_prefix"],
                "p": r["permit_type"],
                "n": r["note"] or None,
                "b": r["legal_basis"] or None,
            },
        )


def downgrade() -> None:
    """Codes back to names, the code list and the legal bases dropped. The corrections to
    departments and rules stay (they are data, and right)."""
    conn = op.get_bind()
    _settle_deferred()
    op.execute(
        """
        ALTER TABLE finding DROP CONSTRAINT fk_finding_permit_type;
        ALTER TABLE permit_requirement DROP CONSTRAINT fk_permit_requirement_permit_type;
        DROP INDEX ix_permit_requirement_permit_type;
        ALTER TABLE routing_rule DROP CONSTRAINT fk_routing_rule_permit_type;
        UPDATE finding f SET permit_type = p.name FROM permit_type p WHERE p.code = f.permit_type;
        UPDATE permit_requirement r SET permit_type = p.name FROM permit_type p
            WHERE p.code = r.permit_type;
        """
    )
    for r in conn.execute(
        sa.text(
            "SELECT r.id, r.permit_type, p.name FROM routing_rule r "
            "JOIN permit_type p ON p.code = r.permit_type ORDER BY r.id"
        )
    ).all():
        _update("routing_rule", "id", r.id, {"permit_type": {"from": r.permit_type, "to": r.name}})
    for (code,) in conn.execute(sa.text("SELECT code FROM permit_type")).all():
        _audit("delete", "permit_type", code, {"code": {"from": code, "to": None}})
    _settle_deferred()
    op.execute(
        """
        DROP TABLE permit_type;
        ALTER TABLE permit_requirement DROP COLUMN legal_basis;
        ALTER TABLE routing_rule DROP COLUMN legal_basis;
        ALTER TABLE department DROP COLUMN legal_basis;
        """
    )
