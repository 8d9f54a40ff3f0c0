"""The dispatch center's queue: everything in a dispatcher's territory that waits for a
person, counted per kind, with the first items of each."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from backend.services import clock
from backend.services import overdue as late_rule
from backend.services.auth import Principal
from backend.services.referrals import scope_clause
from backend.services.scope import bound, scope_of
from backend.services.tasks import task_scope

FIRST = 20


def queue(session: Session, principal: Principal) -> dict[str, Any]:
    scope = scope_of(principal)
    tasks_in = task_scope(scope)
    referrals_in, rparams = scope_clause(principal)
    leads_in = {
        "city": "true",
        "town": "l.town_code = :scope_town",
        "community": "l.community_code = :scope_community",
    }.get(scope.kind, "false")
    red_only = "{a}.escalation = 'red'" if scope.kind == "city" else "true"
    kinds = {
        "unassigned_tasks": (
            f"SELECT t.id, t.type, t.status, t.cell_code, t.due_on FROM patrol_task t "
            f"WHERE t.status IN ('open', 'declined') AND {tasks_in} ORDER BY t.due_on, t.id"
        ),
        "returned_referrals": (
            f"SELECT r.id, r.department_code, r.status_reason, r.due_on FROM referral r "
            f"WHERE r.status = 'returned' AND {referrals_in} ORDER BY r.updated_at, r.id"
        ),
        "leads_outside_cells": (
            "SELECT l.id, l.description, ST_X(l.geom) AS lon, ST_Y(l.geom) AS lat, "
            "l.created_at FROM lead l WHERE l.status = 'open' AND l.cell_code IS NULL "
            f"AND {'true' if scope.kind == 'city' else 'false'} ORDER BY l.id"
        ),
        "flagged_checkins": (
            f"SELECT t.id, t.type, t.assignee_id, t.checkin_distance_m, t.checkin_flag "
            f"FROM patrol_task t WHERE t.checkin_flag IS NOT NULL "
            f"AND t.status IN ('in_progress', 'submitted') AND {tasks_in} ORDER BY t.checkin_at"
        ),
        "overdue_tasks": (
            f"SELECT t.id, t.type, t.status, t.assignee_id, t.due_on FROM patrol_task t "
            f"WHERE {late_rule.task_sql('t')} AND {tasks_in} ORDER BY t.due_on, t.id"
        ),
        "overdue_referrals": (
            f"SELECT r.id, r.department_code, r.status, r.due_on, r.escalation FROM referral r "
            f"WHERE {late_rule.referral_sql('r')} AND {referrals_in} ORDER BY r.due_on, r.id"
        ),
        # red cards go up to the city; a town or community sees every card in its territory
        "escalated_referrals": (
            f"SELECT r.id, r.department_code, r.status, r.due_on, r.escalation FROM referral r "
            f"WHERE r.escalation IS NOT NULL AND {late_rule.referral_live('r')} "
            f"AND {referrals_in} AND {red_only.format(a='r')} "
            f"ORDER BY r.escalation = 'red' DESC, r.due_on, r.id"
        ),
        "escalated_tasks": (
            f"SELECT t.id, t.type, t.status, t.assignee_id, t.due_on, t.escalation "
            f"FROM patrol_task t WHERE t.escalation IS NOT NULL "
            f"AND {late_rule.task_live('t')} AND {tasks_in} "
            f"AND {red_only.format(a='t')} "
            f"ORDER BY t.escalation = 'red' DESC, t.due_on, t.id"
        ),
    }
    del leads_in
    params = {**scope.params, **rparams, "first": FIRST, "today": clock.today()}
    out: dict[str, Any] = {"counts": {}, "items": {}}
    for kind, sql in kinds.items():
        out["counts"][kind] = int(
            session.scalar(bound(f"SELECT count(*) FROM ({sql}) q", params)) or 0
        )
        out["items"][kind] = [
            dict(r) for r in session.execute(bound(f"{sql} LIMIT :first", params)).mappings()
        ]
    return out
