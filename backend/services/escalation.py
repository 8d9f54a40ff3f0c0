"""督办: overdue tasks and referrals get a yellow card when past due, a red card when past due
by `RED_AFTER_DAYS` working days; the supervising level hears of it (an outbox event to the
department, and the item in the higher dispatcher's queue). Set-based and idempotent: a card
is written only when it changes."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services import audit, clock
from backend.services import calendar as workcal
from backend.services import overdue as late_rule

RED_AFTER_DAYS = 5

_CARD = "CASE WHEN x.due_on <= :red_cutoff THEN 'red' ELSE 'yellow' END"
# what can be overdue (backend/services/overdue.py): the same rule as every overdue flag
_LIVE = {
    "patrol_task": late_rule.task_live("x"),
    "referral": late_rule.referral_live("x"),
}
_OBJECT = {"patrol_task": "task", "referral": "referral"}


def red_cutoff(session: Session, today: date, working_days: int) -> date:
    """The latest due date that is at least `working_days` working days before `today`."""
    calendar = workcal.work_calendar(session, today.year - 1, today.year)
    day, counted = today, 0
    while counted < working_days:
        if calendar.is_working_day(day):
            counted += 1
        day -= timedelta(days=1)
    return day


def escalate(
    session: Session, *, today: date | None = None, red_after_days: int = RED_AFTER_DAYS
) -> dict[str, Any]:
    today = today or clock.today()
    params = {"today": today, "red_cutoff": red_cutoff(session, today, red_after_days)}
    counts: dict[str, Any] = {"red_cutoff": params["red_cutoff"].isoformat()}
    for table, live in _LIVE.items():
        session.execute(text("DROP TABLE IF EXISTS carded"))
        session.execute(
            text(
                "CREATE TEMP TABLE carded (id bigint PRIMARY KEY, card text, old text) "
                "ON COMMIT DROP"
            )
        )
        session.execute(
            text(
                f"WITH changed AS (UPDATE {table} x SET escalation = {_CARD}, "
                f"escalated_at = now(), version = x.version + 1, updated_at = now() "
                f"FROM {table} old WHERE old.id = x.id AND {live} AND x.due_on < :today "
                f"AND x.escalation IS DISTINCT FROM {_CARD} "
                f"RETURNING x.id, x.escalation, old.escalation AS old) "
                f"INSERT INTO carded SELECT * FROM changed"
            ),
            params,
        )
        audit.record_from_query(
            session,
            "escalate",
            _OBJECT[table],
            "SELECT id AS object_id, jsonb_build_object('escalation', jsonb_build_object("
            "'from', old, 'to', card)) AS changes FROM carded",
        )
        if table == "referral":
            # the department hears of it (delivered by `gridpatrol outbox run`)
            session.execute(
                text(
                    "INSERT INTO outbox_event (department_code, event_type, payload, status) "
                    "SELECT r.department_code, 'referral.escalated', jsonb_build_object("
                    "'referral_id', r.id, 'escalation', c.card, 'due_on', r.due_on, "
                    "'status', r.status, 'town_code', r.town_code), "
                    "CASE WHEN d.webhook_url IS NULL THEN 'skipped' ELSE 'pending' END "
                    "FROM carded c JOIN referral r ON r.id = c.id "
                    "JOIN department d ON d.code = r.department_code"
                )
            )
        rows = session.execute(text("SELECT card, count(*) FROM carded GROUP BY card")).all()
        counts[_OBJECT[table] + "s"] = {card: n for card, n in rows}
    return counts
