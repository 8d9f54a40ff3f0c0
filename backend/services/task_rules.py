"""The rules that make patrol tasks, each idempotent (a second run makes nothing new: one live
task per entity and type, and a rule does not repeat what it already did), runnable from the
command line, the API and the registration change feed."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.tasks import FIRST_INSPECTION_DAYS
from backend.domain.workdays import Deadline
from backend.services import clock, tasks
from backend.services.errors import InvalidInput

ACTIVE = "e.status IN ('存续', '在业')"
LICENCE_RECHECK_DAYS = 180  # a licence check is not repeated sooner than this


def first_inspection(
    session: Session,
    *,
    entity_ids: list[int] | None = None,
    since: date | None = None,
    origin: str = "new_registration",
) -> dict[str, int]:
    """首检 of new registrations (or, from the feed, address changes): `address_check` and
    `license_display`, due in 10 working days. Without ids: active entities established on or
    after `since` (default 30 days ago) that never had one."""
    due = tasks.due_in(session, FIRST_INSPECTION_DAYS)
    params: dict[str, Any] = {}
    if entity_ids is not None:
        select = f"SELECT e.id FROM market_entity e WHERE e.id = ANY(:ids) AND {ACTIVE}"
        params["ids"] = entity_ids
    else:
        select = (
            f"SELECT e.id FROM market_entity e WHERE {ACTIVE} AND e.established_on >= :since "
            f"AND NOT EXISTS (SELECT 1 FROM patrol_task x WHERE x.entity_id = e.id "
            f"AND x.type = :type AND x.origin = :origin)"
        )
        params.update(since=since or clock.today() - timedelta(days=30), origin=origin)
    made = {}
    for task_type in ("address_check", "license_display"):
        made[task_type] = tasks.create_for_entities(
            session, task_type, origin, select, {**params, "type": task_type}, due=due
        )
    return made


def licence_checks(session: Session, *, entity_ids: list[int] | None = None) -> dict[str, int]:
    """`license_check` for active entities whose industry needs a permit (permit_requirement,
    by GB/T 4754 prefix) that they do not hold, unless checked in the last 180 days."""
    due = tasks.due_in(session, FIRST_INSPECTION_DAYS)
    select = (
        f"SELECT e.id FROM market_entity e WHERE {ACTIVE} AND e.industry_code IS NOT NULL "
        f"AND ({'e.id = ANY(:ids)' if entity_ids is not None else 'true'}) "
        f"AND EXISTS (SELECT 1 FROM permit_requirement r "
        f"  WHERE e.industry_code LIKE r.industry_prefix || '%' "
        f"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(e.licences) l "
        # a licence names its permit by code, name or alias (registries send names)
        f"    WHERE (l->>'type' = r.permit_type OR EXISTS (SELECT 1 FROM permit_type p "
        f"      WHERE p.code = r.permit_type AND (l->>'type' = p.name "
        f"      OR l->>'type' = ANY(p.aliases)))) "
        f"    AND (l->>'valid_to' IS NULL OR (l->>'valid_to' ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}$' "
        f"      AND l->>'valid_to' >= :today_iso)))) "
        f"AND NOT EXISTS (SELECT 1 FROM patrol_task x WHERE x.entity_id = e.id "
        f"  AND x.type = 'license_check' "
        f"  AND x.created_at > now() - make_interval(days => :recheck))"
    )
    made = tasks.create_for_entities(
        session,
        "license_check",
        "permit_required",
        select,
        {
            "ids": entity_ids,
            "recheck": LICENCE_RECHECK_DAYS,
            "today_iso": clock.today().isoformat(),
        },
        due=due,
    )
    return {"license_check": made}


def annual_report_campaign(
    session: Session, year: int, *, start: date | None = None, due: date | None = None
) -> dict[str, int]:
    """The annual-report campaign for reporting `year` (filed between 1 January and 30 June
    of the next year): an `annual_report_prompt` for every active entity established before
    the end of `year` that has not filed it. One campaign per year: a second run adds only
    entities that were not in it."""
    end = date(year + 1, 6, 30)
    start = check_campaign(year, start)
    campaign = f"annual_report:{year}"
    select = (
        f"SELECT e.id FROM market_entity e WHERE {ACTIVE} "
        f"AND (e.established_on IS NULL OR e.established_on <= :year_end) "
        f"AND NOT (:year = ANY(e.annual_report_years)) "
        f"AND NOT EXISTS (SELECT 1 FROM patrol_task x WHERE x.entity_id = e.id "
        f"  AND x.type = 'annual_report_prompt' AND x.campaign = :campaign)"
    )
    made = tasks.create_for_entities(
        session,
        "annual_report_prompt",
        "annual_report",
        select,
        {"year": year, "year_end": date(year, 12, 31), "campaign": campaign},
        due=Deadline(due or end, False),
        campaign=campaign,
    )
    return {"annual_report_prompt": made}


def check_campaign(year: int, start: date | None) -> date:
    """The campaign's start (default today), which must lie between 1 January and 30 June
    of the year after the reporting year."""
    start = start or clock.today()
    end = date(year + 1, 6, 30)
    if not date(year + 1, 1, 1) <= start <= end:
        raise InvalidInput(
            f"The {year} annual-report campaign runs from {year + 1}-01-01 to {end}; "
            f"{start} is outside it."
        )
    return start


def unmatched_addresses(session: Session) -> dict[str, int]:
    """An `address_check` without a point for every active entity whose address the geocoder
    could not match, routed to the dispatcher of the town/community its address names — unless
    one was made since the entity last changed."""
    due = tasks.due_in(session, FIRST_INSPECTION_DAYS)
    select = (
        f"SELECT e.id FROM market_entity e WHERE e.location_source = 'unmatched' AND {ACTIVE} "
        f"AND NOT EXISTS (SELECT 1 FROM patrol_task x WHERE x.entity_id = e.id "
        f"  AND x.type = 'address_check' AND x.created_at >= e.updated_at)"
    )
    made = tasks.create_for_entities(
        session, "address_check", "unmatched_address", select, due=due, assign=False
    )
    return {"address_check": made}


RULES = {
    "first_inspection": first_inspection,
    "licence_checks": licence_checks,
    "unmatched_addresses": unmatched_addresses,
}


def run_rule(session: Session, rule: str, **options: Any) -> dict[str, int]:
    """Run a rule by name; dates may come as ISO strings (from a queued job)."""
    for key in ("start", "since", "due"):
        if isinstance(options.get(key), str):
            options[key] = date.fromisoformat(options[key])
    if rule == "annual_report_campaign":
        return annual_report_campaign(session, **options)
    return RULES[rule](session, **options)


def counts(session: Session) -> dict[str, int]:
    return dict(
        session.execute(
            text("SELECT status, count(*) FROM patrol_task GROUP BY status ORDER BY status")
        ).all()
    )
