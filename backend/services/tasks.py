"""Patrol tasks: creation (set-based, idempotent), assignment to the cell's workers, the state
machine as conditional UPDATEs, and reading them within a territory.

Every transition is one `UPDATE … WHERE id = :id AND status = ANY(:sources) [AND version = :v]`
(HOT Tasking Manager's task/history split, but locked by the UPDATE itself): of two people
acting on the same task at once exactly one matches; the other gets 409 (the task moved on)
or 412 (their version is stale). Each transition writes its audit event in the same
transaction; the database refuses a task change without one.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.tasks import QUEUED, TRANSITIONS
from backend.domain.workdays import Deadline
from backend.services import audit, clock
from backend.services import calendar as workcal
from backend.services import overdue as late_rule
from backend.services.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from backend.services.prepared import execute_prepared
from backend.services.scope import Scope, bound

# Where a new task belongs: its entity's cell (or, unplaced, the town and community its
# registered address names, for that dispatcher's queue).
_PLACE = """
LEFT JOIN entity_placement p ON p.entity_id = e.id
LEFT JOIN grid_cell gc ON gc.id = p.cell_id
LEFT JOIN LATERAL (
    SELECT tw.code FROM town tw WHERE gc.code IS NULL
      AND position(tw.name IN e.registered_address) > 0
    ORDER BY length(tw.name) DESC LIMIT 1) at ON true
LEFT JOIN LATERAL (
    SELECT cm.code FROM community cm WHERE gc.code IS NULL AND cm.town_code = at.code
      AND position(cm.name IN e.registered_address) > 0
    ORDER BY length(cm.name) DESC LIMIT 1) ac ON true
"""


def create_for_entities(
    session: Session,
    task_type: str,
    origin: str,
    entities_sql: str,
    params: dict[str, Any] | None = None,
    *,
    due: Deadline,
    campaign: str | None = None,
    assign: bool = True,
) -> int:
    """One task of `task_type` for each entity id `entities_sql` selects (column `id`) that has
    no live task of that type already, assigned to its cell's worker (unless `assign` is
    False) and audited. Returns how many were made."""
    # The subjects first, into a temp table this session can ANALYZE: right after a bulk
    # load the shared tables' statistics are stale (and only their owner may ANALYZE them),
    # and a planner that believes "1 row" nests seq scans (measured: 45 s instead of 1 s).
    session.execute(text("DROP TABLE IF EXISTS task_subject"))
    session.execute(
        text(f"CREATE TEMP TABLE task_subject ON COMMIT DROP AS SELECT id FROM ({entities_sql}) q"),
        params or {},
    )
    session.execute(text("ANALYZE task_subject"))
    session.execute(text("DROP TABLE IF EXISTS new_task"))
    session.execute(text("CREATE TEMP TABLE new_task (id bigint PRIMARY KEY) ON COMMIT DROP"))
    # Each task is written once, already assigned: the cell's workers take the subjects in
    # turn, the least loaded first (see `assign_queued` for the rule).
    workers = _WORKERS.format(cells="SELECT cell FROM subj") if assign else _NO_WORKERS
    session.execute(
        text(
            f"WITH subj AS (SELECT e.id AS entity_id, gc.code AS cell, "
            f"COALESCE(gc.community_code, ac.code) AS community, "
            f"COALESCE(gc.town_code, at.code) AS town, "
            f"row_number() OVER (PARTITION BY gc.code ORDER BY e.id) - 1 AS rn "
            f"FROM task_subject ts JOIN market_entity e ON e.id = ts.id {_PLACE}), "
            f"workers AS ({workers}), "
            f"made AS (INSERT INTO patrol_task (type, origin, campaign, entity_id, cell_code, "
            f"community_code, town_code, due_on, due_approximate, status, assignee_id, "
            f"assigned_at) "
            f"SELECT :type, :origin, :campaign, s.entity_id, s.cell, s.community, s.town, "
            f":due, :approx, CASE WHEN w.user_id IS NULL THEN 'open' ELSE 'assigned' END, "
            f"w.user_id, CASE WHEN w.user_id IS NOT NULL THEN now() END "
            f"FROM subj s LEFT JOIN workers w ON w.cell_code = s.cell "
            f"AND w.k = s.rn % w.workers ORDER BY s.entity_id "
            f"ON CONFLICT DO NOTHING RETURNING id) "
            f"INSERT INTO new_task SELECT id FROM made"
        ),
        {
            "type": task_type,
            "origin": origin,
            "campaign": campaign,
            "due": due.due,
            "approx": due.approximate,
        },
    )
    made = int(session.scalar(text("SELECT count(*) FROM new_task")) or 0)
    if made:
        audit.record_from_query(
            session,
            "create",
            "task",
            "SELECT t.id AS object_id, jsonb_build_object('type', jsonb_build_object('from', "
            "NULL, 'to', t.type), 'origin', jsonb_build_object('from', NULL, 'to', t.origin), "
            "'entity_id', jsonb_build_object('from', NULL, 'to', t.entity_id), "
            "'assignee_id', jsonb_build_object('from', NULL, 'to', t.assignee_id)) AS changes "
            "FROM patrol_task t JOIN new_task n ON n.id = t.id",
        )
    return made


# The active workers of some cells (`{cells}` selects their codes), numbered k = 0, 1, … per
# cell from the least loaded (live tasks in hand; the primary wins ties).
_WORKERS = """
SELECT w.cell_code, w.user_id,
       row_number() OVER (PARTITION BY w.cell_code ORDER BY COALESCE(l.n, 0),
           (w.duty = 'primary') DESC, w.user_id) - 1 AS k,
       count(*) OVER (PARTITION BY w.cell_code) AS workers
FROM cell_worker w
JOIN app_user u ON u.id = w.user_id AND u.is_active AND u.role = 'grid_worker'
LEFT JOIN (SELECT assignee_id, count(*) AS n FROM patrol_task
           WHERE status IN ('assigned', 'accepted', 'in_progress', 'returned')
           GROUP BY assignee_id) l ON l.assignee_id = w.user_id
WHERE w.cell_code IN ({cells})
"""
_NO_WORKERS = (
    "SELECT NULL::varchar AS cell_code, NULL::int AS user_id, 0::bigint AS k, "
    "1::bigint AS workers WHERE false"
)


def assign_queued(session: Session, tasks_sql: str, params: dict[str, Any] | None = None) -> int:
    """Give queued tasks (open or declined, with a cell) to the cell's workers: its primary
    worker, or — when the cell has several — spread over them, fewest live tasks first
    (the primary wins ties). Tasks of a cell without an active worker stay in the community
    dispatcher's queue. One statement; returns how many were assigned."""
    session.execute(text("DROP TABLE IF EXISTS assigned_task"))
    session.execute(
        text("CREATE TEMP TABLE assigned_task (id bigint PRIMARY KEY, user_id int) ON COMMIT DROP")
    )
    session.execute(
        text(
            f"""
            WITH todo AS (
                SELECT t.id, t.cell_code,
                       row_number() OVER (PARTITION BY t.cell_code ORDER BY t.id) - 1 AS rn
                FROM patrol_task t
                WHERE t.id IN ({tasks_sql}) AND t.status IN ('open', 'declined')
                  AND t.cell_code IS NOT NULL
            ),
            workers AS ({_WORKERS.format(cells="SELECT cell_code FROM todo")}),
            pick AS (
                SELECT todo.id, workers.user_id FROM todo
                JOIN workers ON workers.cell_code = todo.cell_code
                 AND workers.k = todo.rn % workers.workers
            ),
            done AS (
                UPDATE patrol_task t SET status = 'assigned', assignee_id = pick.user_id,
                       assigned_at = now(), version = t.version + 1, updated_at = now()
                FROM pick WHERE t.id = pick.id AND t.status IN ('open', 'declined')
                RETURNING t.id, t.assignee_id
            )
            INSERT INTO assigned_task SELECT id, assignee_id FROM done
            """
        ),
        params or {},
    )
    n = int(session.scalar(text("SELECT count(*) FROM assigned_task")) or 0)
    if n:
        audit.record_from_query(
            session,
            "assign",
            "task",
            "SELECT a.id AS object_id, jsonb_build_object('status', jsonb_build_object("
            "'from', 'open', 'to', 'assigned'), 'assignee_id', jsonb_build_object('from', NULL, "
            "'to', a.user_id), 'by', jsonb_build_object('from', NULL, 'to', 'rule')) AS changes "
            "FROM assigned_task a",
        )
    return n


def due_in(session: Session, working_days: int, start: date | None = None) -> Deadline:
    """The deadline `working_days` working days after `start` (default: today in the
    business zone)."""
    return workcal.deadline(session, start or clock.today(), working_days)


# --------------------------------------------------------------------------------------------
# Transitions
# --------------------------------------------------------------------------------------------


def task_scope(scope: Scope, alias: str = "t") -> str:
    """Tasks a caller may see: a worker the ones in its hands; a dispatcher its territory's."""
    a = alias
    if scope.kind == "city":
        return "true"
    if scope.kind == "cells":
        return f"{a}.assignee_id = :scope_user"
    if scope.kind == "town":
        return f"{a}.town_code = :scope_town"
    return f"{a}.community_code = :scope_community"


def transition(
    session: Session,
    task_id: int,
    action: str,
    scope: Scope,
    *,
    expected_version: int | None = None,
    reason: str | None = None,
    extra_sql: str = "",
    extra_params: dict[str, Any] | None = None,
    extra_changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply `action` to a task in the caller's scope; returns the task's new state.

    404: not in scope; 409: its status does not allow the action; 412: `expected_version`
    is stale. A worker's actions apply to tasks in its own hands only."""
    ctes, params = transition_ctes(
        session,
        task_id,
        action,
        scope,
        expected_version=expected_version,
        reason=reason,
        extra_sql=extra_sql,
        extra_params=extra_params,
        extra_changes=extra_changes,
    )
    session.flush()  # pending ORM changes first, as audit.record does
    row = execute_prepared(session, f"WITH {ctes} SELECT * FROM moved", params).mappings().first()
    if row is None:
        refuse_transition(session, task_id, action, scope, expected_version)
    assert row is not None
    return dict(row)


def transition_ctes(
    session: Session,
    task_id: int,
    action: str,
    scope: Scope,
    *,
    expected_version: int | None = None,
    reason: str | None = None,
    extra_sql: str = "",
    extra_params: dict[str, Any] | None = None,
    extra_changes: dict[str, Any] | None = None,
    guard: str = "true",
) -> tuple[str, dict[str, Any]]:
    """`transition`'s statement as common table expressions (`before`, `moved` — the task's
    new state, no row when refused —, `event`) and their parameters, for a caller that makes
    the move part of a larger statement; `guard` is one more condition on the UPDATE."""
    rule = TRANSITIONS[action]
    if rule.needs_reason and not (reason and reason.strip()):
        raise InvalidInput(f"A reason is needed to {action.replace('_', ' ')} a task.")
    assignee = ", assignee_id = NULL" if rule.target in QUEUED else ""
    params: dict[str, Any] = {
        **scope.params,
        **(extra_params or {}),
        "id": task_id,
        "sources": list(rule.sources),
        "target": rule.target,
        "reason": reason,
        "v": expected_version,
    }
    extra = {
        **({"reason": {"from": None, "to": reason}} if reason else {}),
        **(extra_changes or {}),
    }
    params.update(audit.event_params(session, action, "task"))
    params["ev_extra"] = json.dumps(extra, ensure_ascii=False, default=str)
    # the change and its audit event in one statement (one round trip per task action)
    changes = (
        "jsonb_build_object('status', jsonb_build_object('from', m.old_status, 'to', m.status)) "
        "|| CASE WHEN m.old_assignee IS DISTINCT FROM m.assignee_id THEN jsonb_build_object("
        "'assignee_id', jsonb_build_object('from', m.old_assignee, 'to', m.assignee_id)) "
        "ELSE CAST('{}' AS jsonb) END || CAST(:ev_extra AS jsonb)"
    )
    ctes = (
        f"before AS (SELECT id, status, assignee_id FROM patrol_task WHERE id = :id "
        f"FOR UPDATE), "
        f"moved AS (UPDATE patrol_task t SET status = :target, version = t.version + 1, "
        f"updated_at = now(), status_reason = COALESCE(:reason, t.status_reason)"
        f"{assignee}{extra_sql} FROM before b "
        f"WHERE t.id = b.id AND t.status = ANY(:sources) AND {task_scope(scope)} "
        f"AND (CAST(:v AS int) IS NULL OR t.version = CAST(:v AS int)) AND {guard} "
        f"RETURNING t.id, b.status AS old_status, t.status, t.version, "
        f"b.assignee_id AS old_assignee, t.assignee_id), "
        f"event AS ({audit.insert_events_sql('moved m', 'm.id', changes)})"
    )
    return ctes, params


def refuse_transition(
    session: Session, task_id: int, action: str, scope: Scope, expected: int | None
) -> None:
    """Raise why a transition of the task found no row: 404, 412 or 409."""
    row = (
        session.execute(
            bound(
                f"SELECT t.status, t.version FROM patrol_task t WHERE t.id = :id "
                f"AND {task_scope(scope)}",
                {**scope.params, "id": task_id},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No task {task_id}.")
    if expected is not None and row["version"] != expected:
        raise PreconditionFailed(
            f"Task {task_id} has changed since version {expected} (now {row['version']}, "
            f"{row['status']}); reload it."
        )
    raise Conflict(
        f"Task {task_id} is {row['status']}: it cannot be {_past(action)} now.",
        status_now=row["status"],
        version_now=row["version"],
    )


def _past(action: str) -> str:
    return {
        "accept": "accepted",
        "decline": "declined",
        "check_in": "checked in",
        "assign": "assigned",
        "close": "closed",
        "return": "returned",
        "cancel": "cancelled",
    }.get(action, action)


def assign_to(
    session: Session,
    task_id: int,
    scope: Scope,
    *,
    expected_version: int | None,
    worker_id: int | None = None,
    cell_code: str | None = None,
) -> dict[str, Any]:
    """A dispatcher (re)assigns a task to a worker of its territory, or to a cell's primary
    worker (`cell_code`, which also moves the task to that cell)."""
    worker, cell = _target_worker(session, scope, worker_id, cell_code)
    extra = ", assignee_id = :worker, assigned_at = now()"
    params: dict[str, Any] = {"worker": worker}
    if cell:
        extra += ", cell_code = :cell, community_code = :community, town_code = :town"
        params.update(cell=cell["code"], community=cell["community_code"], town=cell["town_code"])
    return transition(
        session,
        task_id,
        "assign",
        scope,
        expected_version=expected_version,
        extra_sql=extra,
        extra_params=params,
        extra_changes={"cell_code": {"from": None, "to": cell["code"]}} if cell else None,
    )


def _target_worker(
    session: Session, scope: Scope, worker_id: int | None, cell_code: str | None
) -> tuple[int, dict[str, Any] | None]:
    from backend.services.scope import area_clause

    if (worker_id is None) == (cell_code is None):
        raise InvalidInput("Give either a worker (assignee_id) or a cell (cell_code).")
    if cell_code is not None:
        cell = (
            session.execute(
                bound(
                    f"SELECT c.code, c.community_code, c.town_code, w.user_id FROM grid_cell c "
                    f"LEFT JOIN cell_worker w ON w.cell_code = c.code AND w.duty = 'primary' "
                    f"WHERE c.code = :cell AND {area_clause(scope, 'cell', 'c')}",
                    {**scope.params, "cell": cell_code},
                )
            )
            .mappings()
            .first()
        )
        if cell is None:
            raise InvalidInput(f"No cell {cell_code} in your territory.")
        if cell["user_id"] is None:
            raise InvalidInput(f"Cell {cell_code} has no primary worker; name a worker.")
        return int(cell["user_id"]), dict(cell)
    ok = session.scalar(
        bound(
            f"SELECT 1 FROM app_user u WHERE u.id = :w AND u.role = 'grid_worker' AND u.is_active "
            f"AND EXISTS (SELECT 1 FROM cell_worker cw JOIN grid_cell c ON c.code = cw.cell_code "
            f"WHERE cw.user_id = u.id AND {area_clause(scope, 'cell', 'c')})",
            {**scope.params, "w": worker_id},
        )
    )
    if not ok:
        raise InvalidInput(f"No active grid worker {worker_id} works in your territory.")
    assert worker_id is not None
    return worker_id, None


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

TASK_COLUMNS = f"""
t.id, t.type, t.status, t.origin, t.campaign, t.entity_id, t.lead_id, t.finding_id,
t.cell_code, t.community_code, t.town_code, t.assignee_id, t.due_on, t.due_approximate,
{late_rule.task_sql("t")} AS overdue,
t.status_reason, t.checkin_at, t.checkin_distance_m, t.checkin_flag, t.version,
t.created_at, t.updated_at
"""
ENTITY_SUMMARY = """
CASE WHEN e.id IS NULL THEN NULL ELSE jsonb_build_object('id', e.id, 'uscc', e.uscc,
  'name', e.name, 'status', e.status, 'registered_address', e.registered_address,
  'business_address', e.business_address, 'industry_code', e.industry_code) END AS entity
"""


def list_tasks(
    session: Session,
    scope: Scope,
    *,
    offset: int = 0,
    limit: int = 50,
    **filters: Any,
) -> tuple[list[dict[str, Any]], int]:
    where = [task_scope(scope)]
    params: dict[str, Any] = {
        **scope.params,
        "offset": offset,
        "limit": limit,
        "today": clock.today(),
    }
    for key in ("type", "status", "cell_code", "community_code", "town_code", "assignee_id"):
        if filters.get(key) is not None:
            where.append(f"t.{key} = :{key}")
            params[key] = filters[key]
    if filters.get("queued"):
        where.append("t.status IN ('open', 'declined')")
    if filters.get("overdue") is not None:
        late = late_rule.task_sql("t")
        where.append(late if filters["overdue"] else f"NOT {late}")
    if filters.get("campaign"):
        where.append("t.campaign = :campaign")
        params["campaign"] = filters["campaign"]
    clause = " AND ".join(where)
    total = session.scalar(bound(f"SELECT count(*) FROM patrol_task t WHERE {clause}", params))
    rows = session.execute(
        bound(
            f"SELECT {TASK_COLUMNS}, {ENTITY_SUMMARY} FROM patrol_task t "
            f"LEFT JOIN market_entity e ON e.id = t.entity_id WHERE {clause} "
            f"ORDER BY t.due_on, t.id OFFSET :offset LIMIT :limit",
            params,
        )
    ).mappings()
    return [dict(r) for r in rows], int(total or 0)


# the phone's busiest statement: prepared once per connection
_NEAR_ME = (
    "SELECT total, page FROM gp_near_me(CAST(:w AS int), CAST(:lon AS float8), "
    "CAST(:lat AS float8), CAST(:offset AS int), CAST(:limit AS int), CAST(:today AS date))"
)


def near_me(
    session: Session,
    worker_id: int,
    lon: float | None,
    lat: float | None,
    *,
    offset: int = 0,
    limit: int = 50,
) -> tuple[str, int]:
    """The worker's tasks in hand, nearest first from a CGCS2000 point (metres on the
    ellipsoid; tasks without a point last), then by due date: one page as JSON text (written by
    PostgreSQL: measured cheaper than dumping rows in Python) and how many there are in all.

    One call of `gp_near_me` (migrations 0012, 0016), whose plans live as long as the connection."""
    params = {
        "w": worker_id,
        "lon": lon,
        "lat": lat,
        "offset": offset,
        "limit": limit,
        "today": clock.today(),
    }
    total, page = execute_prepared(session, _NEAR_ME, params).one()
    return page, int(total)


def get_task(session: Session, task_id: int, scope: Scope) -> dict[str, Any]:
    row = (
        session.execute(
            bound(
                f"SELECT {TASK_COLUMNS}, {ENTITY_SUMMARY}, "
                f"ST_X(COALESCE(e.geom, l.geom)) AS lon, ST_Y(COALESCE(e.geom, l.geom)) AS lat "
                f"FROM patrol_task t LEFT JOIN market_entity e ON e.id = t.entity_id "
                f"LEFT JOIN lead l ON l.id = t.lead_id "
                f"WHERE t.id = :id AND {task_scope(scope)}",
                {**scope.params, "id": task_id, "today": clock.today()},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No task {task_id}.")
    task = dict(row)
    subject = "t.entity_id = :e" if task["entity_id"] else "t.lead_id = :l"
    ids = {"e": task["entity_id"], "l": task["lead_id"]}
    task["submissions"] = [
        dict(r)
        for r in session.execute(
            bound(
                f"SELECT s.id, s.task_id, t.type AS task_type, s.outcome, s.captured_at, "
                f"s.received_at, s.attachment_ids FROM submission s "
                f"JOIN patrol_task t ON t.id = s.task_id WHERE {subject} "
                f"ORDER BY s.received_at DESC LIMIT 50",
                ids,
            )
        ).mappings()
    ]
    task["findings"] = [
        dict(r)
        for r in session.execute(
            bound(
                f"SELECT f.id, f.type, f.permit_type, f.status, f.details, f.created_at, "
                f"f.task_id FROM finding f JOIN patrol_task t ON t.id = f.task_id "
                f"WHERE {subject} ORDER BY f.id DESC LIMIT 50",
                ids,
            )
        ).mappings()
    ]
    return task
