"""Read and correct market entities, within the caller's territory."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services import audit, geocoding, placement
from backend.services.errors import (
    InvalidInput,
    NotFound,
)
from backend.services.scope import CITY, Scope, area_clause, bound
from backend.services.versioning import require_version, versioned_update
from geo import crs as geocrs

_SELECT = """
SELECT e.id, e.uscc, e.name, e.kind, e.status, e.legal_representative, e.phone,
       e.registered_address, e.business_address, e.industry_code, e.business_scope,
       e.established_on, e.last_changed_on, e.credit_class, e.licences, e.annual_report_years,
       e.abnormal_reason, e.abnormal_listed_on, e.abnormal_removed_on,
       ST_X(e.geom) AS lon, ST_Y(e.geom) AS lat, e.location_source, e.location_accuracy_m,
       c.code AS cell_code, c.community_code, c.town_code, e.version, e.created_at, e.updated_at,
       CASE WHEN e.location_source = 'unmatched' THEN 'address_unmatched'
            WHEN e.geom IS NULL THEN 'no_location'
            WHEN p.cell_id IS NULL THEN 'outside_grid' END AS unplaced_reason,
       e.address_match_id, e.address_match_score, sa.full_text AS matched_address,
       e.location_disagreement_m,
       COALESCE(e.location_disagreement_m > {disagreement}, false) AS location_disagrees
FROM market_entity e
LEFT JOIN entity_placement p ON p.entity_id = e.id
LEFT JOIN grid_cell c ON c.id = p.cell_id
LEFT JOIN standard_address sa ON sa.id = e.address_match_id
""".replace("{disagreement}", str(geocoding.DISAGREEMENT_M))


def _scope_clause(scope: Scope) -> str:
    """City-wide roles see every entity (unplaced ones too); the others those placed in a
    cell of their territory."""
    if scope.kind == "city":
        return "true"
    return f"(c.code IS NOT NULL AND {area_clause(scope, 'cell', 'c')})"


def list_entities(
    session: Session, scope: Scope, *, offset: int = 0, limit: int = 50, **filters: Any
) -> tuple[list[dict[str, Any]], int]:
    where = [_scope_clause(scope)]
    params: dict[str, Any] = {**scope.params, "offset": offset, "limit": limit}
    simple = {
        "cell": "c.code = :cell",
        "community": "c.community_code = :community",
        "town": "c.town_code = :town",
        "status": "e.status = :status",
        "credit_class": "e.credit_class = :credit_class",
        "location_source": "e.location_source = :location_source",
    }
    for key, clause in simple.items():
        if filters.get(key) is not None:
            where.append(clause)
            params[key] = filters[key]
    if filters.get("industry"):
        where.append("e.industry_code LIKE :industry")
        params["industry"] = filters["industry"] + "%"
    if filters.get("abnormal") is not None:
        listed = "(e.abnormal_listed_on IS NOT NULL AND e.abnormal_removed_on IS NULL)"
        where.append(listed if filters["abnormal"] else f"NOT {listed}")
    if filters.get("unplaced") is not None:
        where.append("p.cell_id IS NULL" if filters["unplaced"] else "p.cell_id IS NOT NULL")
    if filters.get("location_disagrees") is not None:
        far = f"COALESCE(e.location_disagreement_m > {geocoding.DISAGREEMENT_M}, false)"
        where.append(far if filters["location_disagrees"] else f"NOT {far}")
    if filters.get("q"):
        # the expression of the trigram index ix_market_entity_search_trgm
        where.append("((e.name || ' ' || e.registered_address) ILIKE :q OR e.uscc = :q_exact)")
        q = filters["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.update(q=f"%{q}%", q_exact=filters["q"].upper())
    if filters.get("bbox"):
        where.append("e.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)")
        params.update(dict(zip(("x0", "y0", "x1", "y1"), filters["bbox"], strict=True)))
    clause = " AND ".join(where)
    base = _SELECT.split("FROM market_entity e", 1)[1]
    total = session.scalar(
        bound(f"SELECT count(*) FROM market_entity e {base} WHERE {clause}", params)
    )
    rows = (
        session.execute(
            bound(f"{_SELECT} WHERE {clause} ORDER BY e.id OFFSET :offset LIMIT :limit", params)
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows], int(total or 0)


def get_entity(session: Session, entity_id: int, scope: Scope) -> dict[str, Any]:
    row = (
        session.execute(
            bound(
                f"{_SELECT} WHERE e.id = :id AND {_scope_clause(scope)}",
                {**scope.params, "id": entity_id},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No market entity {entity_id}.")
    entity = dict(row)
    entity["history"] = [
        dict(r)
        for r in session.execute(
            text(
                "SELECT occurred_at, actor_username, actor_role, action, changes "
                "FROM audit_event WHERE object_type = 'entity' AND object_id = :id "
                "ORDER BY occurred_at DESC, id DESC LIMIT 100"
            ),
            {"id": str(entity_id)},
        ).mappings()
    ]
    return entity


def correct_entity(
    session: Session,
    entity_id: int,
    expected_version: int | None,
    changes: dict[str, Any],
    scope: Scope,
) -> dict[str, Any]:
    """A dispatcher's correction (location, business address, phone), optimistic-locked,
    audited, and re-placed at once when the location moves."""
    before = get_entity(session, entity_id, scope)
    require_version(expected_version, "entity")
    values: dict[str, Any] = {}
    for key in ("business_address", "phone"):
        if key in changes:
            values[key] = changes[key]
    geom_sql = ""
    if "location" in changes:
        loc = changes["location"]
        if loc is None:
            geom_sql = ", geom = NULL, location_source = NULL, location_accuracy_m = NULL"
        else:
            try:
                lon, lat = geocrs.to_cgcs2000(
                    geocrs.normalize_crs(loc.get("crs", "wgs84")), loc["lon"], loc["lat"]
                )
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
            values.update(lon=lon, lat=lat, accuracy=loc.get("accuracy_m"))
            geom_sql = (
                ", geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), "
                "location_source = 'manual', location_accuracy_m = :accuracy"
            )
    sets = [f"{k} = :{k}" for k in ("business_address", "phone") if k in values]
    if geom_sql:
        sets.append(geom_sql.lstrip(", "))
    versioned_update(
        session, "market_entity", entity_id, expected_version, ", ".join(sets), values, "entity"
    )
    moves = placement.place_entities(session, [entity_id]) if "location" in changes else []
    if "business_address" in changes and "location" not in changes:
        # a new address: match it (moves the point only if it came from an address match)
        geocoding.geocode_entities(session, where="e.id = :id", params={"id": entity_id})
    after = get_entity(session, entity_id, CITY)  # it may have left the caller's territory
    fields = ("business_address", "phone", "lon", "lat", "location_source", "cell_code")
    audit.record(
        session,
        "correct",
        "entity",
        entity_id,
        {f: before[f] for f in fields},
        {f: after[f] for f in fields},
    )
    after["moves"] = moves
    return after
