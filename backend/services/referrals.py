"""Referrals (移送): a finding handed to the department that must act on it, tracked until that
department's answer — and, where the answer says the problem is fixed, a grid worker's
re-inspection — closes the loop (report → dispatch → handle → feedback → re-check → close).

States: pending → delivered (an officer opened it) → accepted | returned (not ours: back to
the dispatchers for re-routing; the rule's miss is counted) → in_progress → concluded (a
result) → closed. Every transition is a conditional UPDATE (409 when the referral moved on,
412 when your version is stale), audited, and sent to the department's system via the outbox.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services import audit, clock, outbox, routing, tasks
from backend.services import overdue as late_rule
from backend.services.auth import Principal
from backend.services.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from backend.services.scope import bound

STATUSES = (
    "pending",
    "delivered",
    "accepted",
    "returned",
    "in_progress",
    "concluded",
    "closed",
)
RESULTS = (
    "case_opened",
    "permit_issued",
    "rectified",
    "no_violation",
    "listed_abnormal",
    "closed_down",
    "other",
)
#: results a grid worker re-inspects before the referral closes
RECHECKED = frozenset({"rectified", "permit_issued"})
ABNORMAL_REASON = "通过登记的住所或者经营场所无法联系"  # 经营异常名录, 市场主体登记管理条例

OFFICER = "officer"
DISPATCHER = "dispatcher"
ACTIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    # action: (from statuses, to status, who)
    "receive": (("pending",), "delivered", OFFICER),
    "accept": (("pending", "delivered"), "accepted", OFFICER),
    "return": (("pending", "delivered", "accepted"), "returned", OFFICER),
    "start": (("accepted",), "in_progress", OFFICER),
    "conclude": (("accepted", "in_progress"), "concluded", OFFICER),
    "reroute": (("returned",), "pending", DISPATCHER),
    "close": (("concluded",), "closed", DISPATCHER),
}

_EVIDENCE = f"""
SELECT r.id, r.status, r.department_code, d.name AS department_name, r.town_code,
       r.rule_id, r.due_on, r.due_approximate,
       {late_rule.referral_sql("r")} AS overdue,
       r.result, r.case_number, r.note, r.status_reason, r.reinspection_task_id,
       r.escalation, r.version, r.created_at, r.updated_at, r.concluded_at, r.closed_at,
       jsonb_build_object('id', f.id, 'type', f.type, 'permit_type', f.permit_type,
         'details', f.details, 'status', f.status, 'created_at', f.created_at) AS finding,
       jsonb_build_object('task_id', t.id, 'task_type', t.type, 'submission_id', s.id,
         'captured_at', s.captured_at, 'outcome', s.outcome, 'attachment_ids', s.attachment_ids,
         'lon', ST_X(s.geom), 'lat', ST_Y(s.geom)) AS evidence,
       CASE WHEN e.id IS NULL THEN NULL ELSE jsonb_build_object('id', e.id, 'uscc', e.uscc,
         'name', e.name, 'kind', e.kind, 'status', e.status,
         'registered_address', e.registered_address, 'business_address', e.business_address,
         'industry_code', e.industry_code, 'licences', e.licences,
         'lon', ST_X(e.geom), 'lat', ST_Y(e.geom)) END AS entity,
       CASE WHEN l.id IS NULL THEN NULL ELSE jsonb_build_object('id', l.id,
         'description', l.description, 'lon', ST_X(l.geom), 'lat', ST_Y(l.geom)) END AS lead
FROM referral r
JOIN department d ON d.code = r.department_code
JOIN finding f ON f.id = r.finding_id
JOIN patrol_task t ON t.id = f.task_id
JOIN submission s ON s.id = f.submission_id
LEFT JOIN market_entity e ON e.id = r.entity_id
LEFT JOIN lead l ON l.id = r.lead_id
"""


def scope_clause(principal: Principal, alias: str = "r") -> tuple[str, dict[str, Any]]:
    """Referrals a caller may see: an officer its department's (its branch's, when it has a
    town); a dispatcher its territory's; city-wide roles all; grid workers none."""
    a, role = alias, principal.role
    if role in ("admin", "city_dispatcher", "auditor"):
        return "true", {}
    if role == "department_officer":
        clause = f"{a}.department_code = :officer_dept"
        params: dict[str, Any] = {"officer_dept": principal.department_code}
        if principal.town_code:
            clause += f" AND {a}.town_code = :officer_town"
            params["officer_town"] = principal.town_code
        return f"({clause})", params
    # dispatchers: where the finding was made (a referral's branch may be city-wide)
    found_in = (
        f"EXISTS (SELECT 1 FROM finding sf JOIN patrol_task st ON st.id = sf.task_id "
        f"WHERE sf.id = {a}.finding_id AND st.{{column}} = :disp_area)"
    )
    if role == "town_dispatcher":
        return found_in.format(column="town_code"), {"disp_area": principal.town_code}
    if role == "community_dispatcher":
        return found_in.format(column="community_code"), {"disp_area": principal.community_code}
    return "false", {}


def refer_findings(session: Session, finding_ids: list[int]) -> list[dict[str, Any]]:
    """A referral for each finding that needs a department, in the caller's transaction."""
    made = []
    for f in session.execute(
        text(
            "SELECT f.id, f.type, f.permit_type, f.details, f.entity_id, f.lead_id, "
            "t.town_code, t.finding_id AS original_finding, "
            "COALESCE(e.industry_code, f.details->>'industry_code') AS industry_code "
            "FROM finding f JOIN patrol_task t ON t.id = f.task_id "
            "LEFT JOIN market_entity e ON e.id = f.entity_id WHERE f.id = ANY(:ids) ORDER BY f.id"
        ),
        {"ids": finding_ids},
    ).mappings():
        if f["type"] not in routing.REFERRED:
            continue
        decision = routing.route(
            session,
            f["type"],
            permit_type=f["permit_type"],
            industry_code=f["industry_code"],
            town_code=f["town_code"],
        )
        department, rule_id, days = (
            decision["department_code"],
            decision["rule"]["id"],
            decision["time_limit_days"],
        )
        if f["type"] == "not_rectified" and f["original_finding"]:
            earlier = session.execute(
                text(
                    "SELECT department_code, rule_id FROM referral WHERE finding_id = :f "
                    "ORDER BY id DESC LIMIT 1"
                ),
                {"f": f["original_finding"]},
            ).first()
            if earlier:  # back to the department that handled the original finding
                department, rule_id = earlier.department_code, earlier.rule_id
        branch = f["town_code"] if _has_branches(session, department) else None
        due = tasks.due_in(session, days)
        rid = session.scalar(
            text(
                "INSERT INTO referral (finding_id, entity_id, lead_id, department_code, "
                "town_code, rule_id, due_on, due_approximate) VALUES (:f, :e, :l, :d, :t, "
                ":rule, :due, :approx) ON CONFLICT DO NOTHING RETURNING id"
            ),
            {
                "f": f["id"],
                "e": f["entity_id"],
                "l": f["lead_id"],
                "d": department,
                "t": branch,
                "rule": rule_id,
                "due": due.due,
                "approx": due.approximate,
            },
        )
        if rid is None:
            continue
        session.execute(
            text("UPDATE finding SET status = 'referred' WHERE id = :f"), {"f": f["id"]}
        )
        audit.record(
            session,
            "create",
            "referral",
            rid,
            changes={
                "department_code": {"from": None, "to": department},
                "town_code": {"from": None, "to": branch},
                "finding_id": {"from": None, "to": f["id"]},
                "rule_id": {"from": None, "to": rule_id},
            },
        )
        _emit(session, rid, "referral.created")
        made.append({"id": rid, "department_code": department, "town_code": branch})
    return made


def _has_branches(session: Session, department: str) -> bool:
    return bool(
        session.scalar(
            text("SELECT town_branches FROM department WHERE code = :d"), {"d": department}
        )
    )


def _emit(session: Session, referral_id: int, event_type: str) -> None:
    row = (
        session.execute(
            text(f"{_EVIDENCE} WHERE r.id = :id"), {"id": referral_id, "today": clock.today()}
        )
        .mappings()
        .one()
    )
    payload = {k: v for k, v in dict(row).items() if k not in ("version",)}
    outbox.emit(session, row["department_code"], event_type, _jsonable(payload))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def list_referrals(
    session: Session,
    principal: Principal,
    *,
    offset: int = 0,
    limit: int = 50,
    **filters: Any,
) -> tuple[list[dict[str, Any]], int]:
    clause, params = scope_clause(principal)
    where = [clause]
    params.update(offset=offset, limit=limit, today=clock.today())
    for key, column in (("status", "r.status"), ("town_code", "r.town_code")):
        if filters.get(key):
            where.append(f"{column} = :{key}")
            params[key] = filters[key]
    if filters.get("finding_type"):
        where.append("f.type = :finding_type")
        params["finding_type"] = filters["finding_type"]
    if filters.get("department_code"):
        where.append("r.department_code = :department_code")
        params["department_code"] = filters["department_code"]
    if filters.get("overdue") is not None:
        late = late_rule.referral_sql("r")
        where.append(late if filters["overdue"] else f"NOT {late}")
    sql_where = " AND ".join(where)
    total = session.scalar(
        bound(
            f"SELECT count(*) FROM referral r JOIN finding f ON f.id = r.finding_id "
            f"WHERE {sql_where}",
            params,
        )
    )
    rows = session.execute(
        bound(
            f"{_EVIDENCE} WHERE {sql_where} ORDER BY r.due_on, r.id OFFSET :offset LIMIT :limit",
            params,
        )
    ).mappings()
    return [dict(r) for r in rows], int(total or 0)


def get_referral(session: Session, referral_id: int, principal: Principal) -> dict[str, Any]:
    """One referral with its evidence. An officer of its department opening a pending one
    acknowledges receipt (→ delivered)."""
    clause, params = scope_clause(principal)
    row = (
        session.execute(
            bound(
                f"{_EVIDENCE} WHERE r.id = :id AND {clause}",
                {**params, "id": referral_id, "today": clock.today()},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No referral {referral_id}.")
    if row["status"] == "pending" and principal.role == "department_officer":
        act(session, referral_id, "receive", principal)
        return get_referral(session, referral_id, principal)
    return dict(row)


def act(
    session: Session,
    referral_id: int,
    action: str,
    principal: Principal,
    *,
    expected_version: int | None = None,
    reason: str | None = None,
    result: str | None = None,
    case_number: str | None = None,
    note: str | None = None,
    department_code: str | None = None,
    town_code: str | None = None,
) -> dict[str, Any]:
    """Apply an action (see ACTIONS) as `principal`; returns the referral's new state."""
    sources, target, who = ACTIONS[action]
    if who == OFFICER and principal.role != "department_officer" and principal.role != "admin":
        raise Conflict(f"Only the department's officers can {action} a referral.")
    if action in ("return", "reroute", "close") and not (reason and reason.strip()):
        raise InvalidInput(f"A reason is needed to {action} a referral.")
    sets, params = [], {}
    changes: dict[str, Any] = {}
    if action == "conclude":
        if result not in RESULTS:
            raise InvalidInput(f"The result must be one of {', '.join(RESULTS)}.")
        if result == "case_opened" and not case_number:
            raise InvalidInput("A case number (案号) is needed when a case was opened.")
        sets.append("result = :result, case_number = :case, note = :note, concluded_at = now()")
        params.update(result=result, case=case_number, note=note)
        changes["result"] = {"from": None, "to": result}
    if action == "reroute":
        if not department_code:
            raise InvalidInput("Name the department to re-route to.")
        branch = town_code if _has_branches(session, department_code) else None
        if not session.scalar(
            text("SELECT 1 FROM department WHERE code = :d AND active"), {"d": department_code}
        ):
            raise InvalidInput(f"No active department {department_code}.")
        sets.append("department_code = :dept, town_code = COALESCE(:branch, r.town_code)")
        params.update(dept=department_code, branch=branch)
        changes["department_code"] = {"from": None, "to": department_code}
    if action == "close":
        sets.append("closed_at = now()")
    clause, scope_params = scope_clause(principal)
    extra = (", " + ", ".join(sets)) if sets else ""
    row = (
        session.execute(
            bound(
                f"WITH before AS (SELECT id, status, department_code FROM referral "
                f"WHERE id = :id FOR UPDATE) "
                f"UPDATE referral r SET status = :target, version = r.version + 1, "
                f"updated_at = now(), status_reason = COALESCE(:reason, r.status_reason)"
                f"{extra} FROM before b WHERE r.id = b.id AND r.status = ANY(:sources) "
                f"AND {clause} AND (CAST(:v AS int) IS NULL OR r.version = CAST(:v AS int)) "
                f"RETURNING r.id, b.status AS old_status, r.status, r.version, "
                f"b.department_code AS old_department, r.department_code, r.rule_id, "
                f"r.finding_id, r.entity_id",
                {
                    **scope_params,
                    **params,
                    "id": referral_id,
                    "target": target,
                    "sources": list(sources),
                    "reason": reason,
                    "v": expected_version,
                },
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        _refusal(session, referral_id, action, principal, expected_version)
    assert row is not None
    changes["status"] = {"from": row["old_status"], "to": row["status"]}
    if row["old_department"] != row["department_code"]:
        changes["department_code"] = {"from": row["old_department"], "to": row["department_code"]}
    if reason:
        changes["reason"] = {"from": None, "to": reason}
    audit.record(session, action, "referral", referral_id, changes=changes)
    if action == "return" and row["rule_id"]:
        session.execute(
            text("UPDATE routing_rule SET misses = misses + 1 WHERE id = :r"), {"r": row["rule_id"]}
        )
        audit.record(
            session,
            "miss",
            "routing_rule",
            row["rule_id"],
            changes={"referral_id": {"from": None, "to": referral_id}},
        )
    if action != "receive":
        _emit(session, referral_id, f"referral.{row['status']}")
    if action == "conclude":
        _after_conclusion(session, dict(row), result or "", principal)
    return dict(row)


def _after_conclusion(
    session: Session, row: dict[str, Any], result: str, principal: Principal
) -> None:
    """A fix is re-inspected before the referral closes; other results close it at once. A
    listing in the abnormal list (经营异常名录) is written to the entity."""
    if result == "listed_abnormal" and row["entity_id"]:
        session.execute(
            text(
                "UPDATE market_entity SET abnormal_reason = :why, abnormal_listed_on = :today, "
                "abnormal_removed_on = NULL, version = version + 1, updated_at = now() "
                "WHERE id = :e"
            ),
            {"why": ABNORMAL_REASON, "today": clock.today(), "e": row["entity_id"]},
        )
        audit.record(
            session,
            "list_abnormal",
            "entity",
            row["entity_id"],
            changes={
                "abnormal_reason": {"from": None, "to": ABNORMAL_REASON},
                "referral_id": {"from": None, "to": row["id"]},
            },
        )
    if result in RECHECKED:
        task_id = _reinspection(session, row["finding_id"])
        session.execute(
            text("UPDATE referral SET reinspection_task_id = :t WHERE id = :r"),
            {"t": task_id, "r": row["id"]},
        )
        audit.record(
            session,
            "reinspect",
            "referral",
            row["id"],
            changes={"reinspection_task_id": {"from": None, "to": task_id}},
        )
        return
    _close(session, row["id"], f"concluded: {result}")


def _close(session: Session, referral_id: int, reason: str) -> None:
    closed = session.scalar(
        text(
            "UPDATE referral SET status = 'closed', closed_at = now(), status_reason = :why, "
            "version = version + 1, updated_at = now() WHERE id = :id AND status = 'concluded' "
            "RETURNING id"
        ),
        {"id": referral_id, "why": reason},
    )
    if closed:
        audit.record(
            session,
            "close",
            "referral",
            referral_id,
            changes={
                "status": {"from": "concluded", "to": "closed"},
                "reason": {"from": None, "to": reason},
            },
        )
        _emit(session, referral_id, "referral.closed")


def _reinspection(session: Session, finding_id: int) -> int:
    """The live re-inspection of a finding, made (and given to the cell's worker) if none."""
    live = session.scalar(
        text(
            "SELECT id FROM patrol_task WHERE finding_id = :f AND type = 'reinspection' "
            "AND status NOT IN ('closed', 'cancelled')"
        ),
        {"f": finding_id},
    )
    if live:
        return int(live)
    due = tasks.due_in(session, 10)
    task_id = session.scalar(
        text(
            "INSERT INTO patrol_task (type, origin, entity_id, lead_id, finding_id, cell_code, "
            "community_code, town_code, due_on, due_approximate) SELECT 'reinspection', "
            "'referral', f.entity_id, f.lead_id, f.id, t.cell_code, t.community_code, "
            "t.town_code, :due, :approx FROM finding f JOIN patrol_task t ON t.id = f.task_id "
            "WHERE f.id = :f RETURNING id"
        ),
        {"f": finding_id, "due": due.due, "approx": due.approximate},
    )
    audit.record(
        session,
        "create",
        "task",
        task_id,
        changes={
            "type": {"from": None, "to": "reinspection"},
            "finding_id": {"from": None, "to": finding_id},
        },
    )
    tasks.assign_queued(session, "SELECT CAST(:rid AS bigint)", {"rid": task_id})
    return int(task_id)


def on_reinspection(session: Session, finding_id: int, rectified: bool) -> None:
    """A worker re-inspected: a confirmed fix closes the concluded referrals of the finding."""
    if not rectified:
        return
    for rid in session.scalars(
        text("SELECT id FROM referral WHERE finding_id = :f AND status = 'concluded'"),
        {"f": finding_id},
    ):
        _close(session, int(rid), "re-inspection confirmed the fix")


def _refusal(
    session: Session, referral_id: int, action: str, principal: Principal, expected: int | None
) -> None:
    clause, params = scope_clause(principal)
    row = session.execute(
        bound(
            f"SELECT r.status, r.version FROM referral r WHERE r.id = :id AND {clause}",
            {**params, "id": referral_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"No referral {referral_id}.")
    if expected is not None and row.version != expected:
        raise PreconditionFailed(
            f"Referral {referral_id} has changed since version {expected} (now {row.version}, "
            f"{row.status}); reload it."
        )
    done = {"receive": "received", "close": "closed", "reroute": "re-routed"}.get(
        action, action + ("d" if action.endswith("e") else "ed")
    )
    raise Conflict(f"Referral {referral_id} is {row.status}: it cannot be {done} now.")


# the findings that are leads of 无照/无证 operation: the denominator of 线索案件转化率
UNLICENSED = "f.type IN ('unlicensed_operation', 'permit_missing')"


def stats(
    session: Session,
    principal: Principal,
    *,
    since: date,
    until: date,
    by: str = "department_town",
) -> list[dict[str, Any]]:
    """Figures per department (and town) for referrals received in [since, until]; the
    formulas are spelt out in docs/figures.md (三率 of 74號 item 11):
    线索处理反馈率 = concluded / received (every referral is a lead the department must answer);
    线索案件转化率 = cases opened / referrals of 无照 or 无证 operation (unlicensed_operation,
    permit_missing) only — address, sign or display findings are not leads of unlicensed
    operation and would dilute it; 许可审批发证率 = permits issued / permit_missing referrals.
    A rate whose denominator is 0 is null, not 0."""
    clause, params = scope_clause(principal)
    keys = {
        "department": "r.department_code",
        "town": "r.town_code",
        "department_town": "r.department_code, r.town_code",
    }[by]
    rows = session.execute(
        bound(
            f"""
            SELECT {keys},
                   count(*) AS received,
                   count(*) FILTER (WHERE r.concluded_at IS NOT NULL) AS with_feedback,
                   round(count(*) FILTER (WHERE r.concluded_at IS NOT NULL)::numeric
                         / count(*), 4)::float8 AS feedback_rate,
                   count(*) FILTER (WHERE r.result = 'case_opened') AS cases_opened,
                   count(*) FILTER (WHERE {UNLICENSED}) AS unlicensed_referrals,
                   count(*) FILTER (WHERE {UNLICENSED} AND r.result = 'case_opened')
                       AS unlicensed_cases_opened,
                   round(count(*) FILTER (WHERE {UNLICENSED} AND r.result = 'case_opened')
                         ::numeric / NULLIF(count(*) FILTER (WHERE {UNLICENSED}), 0), 4)::float8
                       AS case_conversion_rate,
                   count(*) FILTER (WHERE f.type = 'permit_missing') AS permit_referrals,
                   count(*) FILTER (WHERE f.type = 'permit_missing'
                                    AND r.result = 'permit_issued') AS permits_issued,
                   round(count(*) FILTER (WHERE f.type = 'permit_missing'
                                          AND r.result = 'permit_issued')::numeric
                         / NULLIF(count(*) FILTER (WHERE f.type = 'permit_missing'), 0), 4)::float8
                       AS permit_issue_rate,
                   round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM
                         r.concluded_at - r.created_at)) / 86400)::numeric, 2)::float8
                       AS median_days_to_feedback,
                   count(*) FILTER (WHERE {late_rule.referral_sql("r")}) AS overdue
            FROM referral r JOIN finding f ON f.id = r.finding_id
            WHERE r.created_at >= :since AND r.created_at < :until_next AND {clause}
            GROUP BY {keys} ORDER BY {keys}
            """,
            {
                **params,
                # the period's days are business dates: from midnight there, not the session's
                "since": clock.start_of(since),
                "until_next": clock.start_of(until + timedelta(days=1)),
                "today": clock.today(),
            },
        )
    ).mappings()
    return [dict(r) for r in rows]
