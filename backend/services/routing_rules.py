"""Routing rules as data: read, explain, edit (admins; audited). Departments are
backend/services/departments.py's (`list_departments` and `update_department` are re-exported
here for older callers)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services import audit, permit_types, routing
from backend.services.auth import Principal
from backend.services.departments import list_departments, require_active, update_department
from backend.services.errors import NotFound
from backend.services.versioning import versioned_update

_RULE_COLUMNS = (
    "id, finding_type, permit_type, industry_prefix, department_code, time_limit_days, "
    "priority, active, note, legal_basis, misses, version"
)
_RULE_FIELDS = (
    "finding_type",
    "permit_type",
    "industry_prefix",
    "department_code",
    "time_limit_days",
    "priority",
    "active",
    "note",
    "legal_basis",
)


def explain(session: Session, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """Routing for a stored finding (its type, permit, the entity's industry, its town) or a
    hypothetical one given by its parts."""
    if "finding_id" in body:
        from backend.services.referrals import scope_clause

        clause, params = scope_clause(principal)
        # a finding is visible when a referral of it is, or to city-wide roles
        row = session.execute(
            text(
                "SELECT f.id, f.type, f.permit_type, t.town_code, "
                "COALESCE(e.industry_code, f.details->>'industry_code') AS industry "
                "FROM finding f JOIN patrol_task t ON t.id = f.task_id "
                "LEFT JOIN market_entity e ON e.id = f.entity_id WHERE f.id = :f AND ("
                + (
                    "true"
                    if clause == "true"
                    else f"EXISTS (SELECT 1 FROM referral r WHERE r.finding_id = f.id AND {clause})"
                )
                + ")"
            ),
            {**params, "f": body["finding_id"]},
        ).first()
        if row is None:
            raise NotFound(f"No finding {body['finding_id']}.")
        finding = {
            "finding_type": row.type,
            "permit_type": row.permit_type,
            "industry_code": row.industry,
            "town_code": row.town_code,
        }
    else:
        finding = {k: body.get(k) for k in ("finding_type", "permit_type", "industry_code")}
        finding["town_code"] = body.get("town_code")
        if finding["permit_type"]:  # a code (a name or alias is taken as its code)
            finding["permit_type"] = permit_types.resolve(session, finding["permit_type"])
    decision = routing.route(
        session,
        finding["finding_type"],
        permit_type=finding["permit_type"],
        industry_code=finding["industry_code"],
        town_code=finding["town_code"],
    )
    return {"finding": finding, **decision}


def list_rules(session: Session) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in session.execute(
            text(
                f"SELECT {_RULE_COLUMNS} FROM routing_rule ORDER BY finding_type = '*', "
                f"finding_type, permit_type NULLS LAST, industry_prefix NULLS LAST, id"
            )
        ).mappings()
    ]


def _rule(session: Session, rule_id: int) -> dict[str, Any]:
    row = (
        session.execute(
            text(f"SELECT {_RULE_COLUMNS} FROM routing_rule WHERE id = :id"), {"id": rule_id}
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No routing rule {rule_id}.")
    return dict(row)


__all__ = [
    "create_rule",
    "explain",
    "list_departments",
    "list_rules",
    "update_department",
    "update_rule",
]


def create_rule(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    """Add a rule (audited); 422 when its department is unknown or inactive."""
    require_active(session, values["department_code"])
    if values.get("permit_type"):  # a permit code (422 listing them otherwise)
        values = {**values, "permit_type": permit_types.resolve(session, values["permit_type"])}
    cols = [c for c in _RULE_FIELDS if c in values]
    rule_id = session.scalar(
        text(
            f"INSERT INTO routing_rule ({', '.join(cols)}) VALUES "
            f"({', '.join(':' + c for c in cols)}) RETURNING id"
        ),
        values,
    )
    audit.record(session, "create", "routing_rule", rule_id, None, {c: values[c] for c in cols})
    return _rule(session, int(rule_id))


def update_rule(
    session: Session, rule_id: int, expected: int, changes: dict[str, Any]
) -> dict[str, Any]:
    before = _rule(session, rule_id)
    if "department_code" in changes:
        require_active(session, changes["department_code"])
    elif changes.get("active") and not before["active"]:
        require_active(session, before["department_code"])  # no live rule to a closed one
    sets = ", ".join(f"{c} = :{c}" for c in changes)
    versioned_update(session, "routing_rule", rule_id, expected, sets, changes, "routing rule")
    after = _rule(session, rule_id)
    audit.record(session, "update", "routing_rule", rule_id, before, after)
    return after
