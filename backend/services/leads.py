"""Leads (线索) of unlicensed operation: reported by a worker on patrol or by a dispatcher,
placed in their cell, and turned into an `unlicensed_lead` task — unless an open lead of the
same kind lies within 30 m, in which case the new report is linked to it, not doubled."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.tasks import FIRST_INSPECTION_DAYS
from backend.services import audit, tasks
from backend.services.errors import InvalidInput
from geo import crs as geocrs

DUPLICATE_RADIUS_M = 30.0


def report_lead(
    session: Session,
    reporter_id: int | None,
    *,
    lon: float,
    lat: float,
    crs: str,
    description: str,
    kind: str = "unlicensed_operation",
    attachment_ids: list[int] | None = None,
) -> dict[str, Any]:
    try:
        x, y = geocrs.to_cgcs2000(geocrs.normalize_crs(crs), lon, lat)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    point = "ST_SetSRID(ST_MakePoint(:x, :y), 4490)"
    params: dict[str, Any] = {"x": x, "y": y, "kind": kind, "r": DUPLICATE_RADIUS_M}
    if not session.scalar(
        text(f"SELECT EXISTS (SELECT 1 FROM town WHERE ST_Intersects(geom, {point}))"), params
    ):
        raise InvalidInput("The point is outside the city.")
    attachments = sorted(set(attachment_ids or []))
    if attachments and reporter_id is not None:
        known = set(
            session.scalars(
                text("SELECT id FROM attachment WHERE id = ANY(:ids) AND uploaded_by = :u"),
                {"ids": attachments, "u": reporter_id},
            )
        )
        if unknown := [a for a in attachments if a not in known]:
            raise InvalidInput(f"Unknown attachments: {unknown} (upload them first).")
    # serialise reports of one kind, so two reports of the same shop at once cannot both
    # miss each other
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('lead:' || :kind))"), params)
    original = session.scalar(
        text(
            f"SELECT id FROM lead WHERE status = 'open' AND kind = :kind "
            f"AND duplicate_of IS NULL AND ST_DWithin(geom::geography, {point}::geography, :r) "
            f"ORDER BY ST_Distance(geom::geography, {point}::geography), id LIMIT 1"
        ),
        params,
    )
    row = (
        session.execute(
            text(
                f"INSERT INTO lead (kind, description, geom, cell_code, community_code, "
                f"town_code, status, duplicate_of, reported_by, attachment_ids) "
                f"SELECT :kind, :description, {point}, c.code, c.community_code, c.town_code, "
                f"CASE WHEN CAST(:original AS bigint) IS NULL THEN 'open' ELSE 'closed' END, "
                f":original, :reporter, :attachments FROM (SELECT 1) one "
                f"LEFT JOIN LATERAL (SELECT code, community_code, town_code FROM grid_cell "
                f"WHERE ST_Intersects(geom, {point}) ORDER BY code LIMIT 1) c ON true "
                f"RETURNING id, cell_code, community_code, town_code, status, duplicate_of"
            ),
            {
                **params,
                "description": description,
                "original": original,
                "reporter": reporter_id,
                "attachments": attachments,
            },
        )
        .mappings()
        .one()
    )
    lead = dict(row)
    audit.record(
        session,
        "create",
        "lead",
        lead["id"],
        changes={
            "kind": {"from": None, "to": kind},
            "duplicate_of": {"from": None, "to": original},
        },
    )
    lead["task_id"] = None
    if original is None:
        due = tasks.due_in(session, FIRST_INSPECTION_DAYS)
        task_id = session.scalar(
            text(
                "INSERT INTO patrol_task (type, origin, lead_id, cell_code, community_code, "
                "town_code, due_on, due_approximate) VALUES ('unlicensed_lead', 'lead', :lead, "
                ":cell, :community, :town, :due, :approx) RETURNING id"
            ),
            {
                "lead": lead["id"],
                "cell": lead["cell_code"],
                "community": lead["community_code"],
                "town": lead["town_code"],
                "due": due.due,
                "approx": due.approximate,
            },
        )
        audit.record(
            session,
            "create",
            "task",
            task_id,
            changes={
                "type": {"from": None, "to": "unlicensed_lead"},
                "lead_id": {"from": None, "to": lead["id"]},
            },
        )
        tasks.assign_queued(session, "SELECT CAST(:t AS bigint)", {"t": task_id})
        lead["task_id"] = task_id
    lead["lon"], lead["lat"] = x, y
    return lead
