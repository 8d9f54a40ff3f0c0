"""谁审批、谁监管，谁主管、谁监管: which department a finding goes to, by rules kept as data.

A rule names a finding type (or `*`), optionally a permit type and an industry-code prefix
(GB/T 4754), the department and its time limit in working days. The most specific rule wins:
an exact finding type beats `*`, then a permit type beats none, then the longer industry
prefix, then the higher priority. The `*` rule (market supervision) catches the rest.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services.errors import NotFound

#: findings a department must act on (the others are recorded, e.g. annual_report_notified)
REFERRED = frozenset(
    {
        "permit_missing",
        "unlicensed_operation",
        "address_unreachable",
        "license_not_displayed",
        "sign_mismatch",
        "not_operating",
        "not_rectified",
    }
)

SPECIFICITY = """(CASE WHEN r.finding_type = :finding THEN 100 ELSE 0 END
  + CASE WHEN r.permit_type IS NOT NULL THEN 10 ELSE 0 END
  + COALESCE(length(r.industry_prefix), 0))"""

_CANDIDATES = f"""
SELECT r.id, r.finding_type, r.permit_type, r.industry_prefix, r.department_code,
       d.name AS department_name, d.town_branches, r.time_limit_days, r.priority, r.note,
       {SPECIFICITY} AS specificity
FROM routing_rule r JOIN department d ON d.code = r.department_code
WHERE r.active AND d.active AND (r.finding_type = :finding OR r.finding_type = '*')
  AND (r.permit_type IS NULL OR r.permit_type = :permit)
  AND (r.industry_prefix IS NULL OR :industry LIKE r.industry_prefix || '%')
ORDER BY specificity DESC, r.priority DESC, r.id
"""


def route(
    session: Session,
    finding_type: str,
    *,
    permit_type: str | None = None,
    industry_code: str | None = None,
    town_code: str | None = None,
) -> dict[str, Any]:
    """The winning rule, the department and branch (the finding's town when the department
    has town branches), why it won, and the runners-up."""
    params = {"finding": finding_type, "permit": permit_type, "industry": industry_code or ""}
    rows = [dict(r) for r in session.execute(text(_CANDIDATES), params).mappings()]
    if not rows:
        raise NotFound("No routing rule applies, and the default rule is missing.")
    rule = rows[0]
    branch = town_code if rule["town_branches"] else None
    return {
        "rule": rule,
        "department_code": rule["department_code"],
        "department_name": rule["department_name"],
        "branch_town_code": branch,
        "time_limit_days": rule["time_limit_days"],
        "why": _why(rule, finding_type, permit_type, industry_code),
        "other_candidates": rows[1:5],
        "referred": finding_type in REFERRED,
    }


def _why(rule: dict[str, Any], finding: str, permit: str | None, industry: str | None) -> str:
    if rule["finding_type"] == "*":
        return f"no rule names {finding!r}: the default rule ({rule['department_name']})"
    parts = [f"finding type {finding!r}"]
    if rule["permit_type"]:
        parts.append(f"permit {rule['permit_type']}")
    if rule["industry_prefix"]:
        parts.append(f"industry {industry} under {rule['industry_prefix']}")
    return "the most specific rule matching " + ", ".join(parts)
