"""The one rule of "overdue" (docs/dates.md), for every query and list that shows it.

A task is overdue when its due date is before today (the business zone's, `clock.today()`,
passed to SQL as `:today`) and it is still in the worker's or the queue's hands: not
`submitted` (done on site, waiting for a dispatcher's review: not late by the worker; a
`returned` task is back in the worker's hands and can be overdue again), `closed` or
`cancelled`. A referral is overdue when its due date is before today and the department has
not concluded it (`concluded`, `closed`). Escalation cards exactly these items.
"""

from __future__ import annotations

from datetime import date

#: task statuses that are never overdue
TASK_NOT_LATE = ("submitted", "closed", "cancelled")
#: referral statuses that are never overdue
REFERRAL_NOT_LATE = ("concluded", "closed")


def _in(statuses: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"


def task_live(alias: str = "t") -> str:
    """SQL: the task is in a status that can be overdue."""
    return f"{alias}.status NOT IN {_in(TASK_NOT_LATE)}"


def referral_live(alias: str = "r") -> str:
    """SQL: the referral is in a status that can be overdue."""
    return f"{alias}.status NOT IN {_in(REFERRAL_NOT_LATE)}"


def task_sql(alias: str = "t") -> str:
    """SQL: the task is overdue (needs the `:today` parameter)."""
    return f"({alias}.due_on < :today AND {task_live(alias)})"


def referral_sql(alias: str = "r") -> str:
    """SQL: the referral is overdue (needs the `:today` parameter)."""
    return f"({alias}.due_on < :today AND {referral_live(alias)})"


def task_is_overdue(due_on: date | None, status: str, today: date) -> bool:
    """The same rule in Python."""
    return due_on is not None and due_on < today and status not in TASK_NOT_LATE


def referral_is_overdue(due_on: date | None, status: str, today: date) -> bool:
    """The same rule in Python."""
    return due_on is not None and due_on < today and status not in REFERRAL_NOT_LATE
