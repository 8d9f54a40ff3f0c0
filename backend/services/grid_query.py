"""Read the grid: features by filter, one area with its parents and neighbours, locate a point.

GeoJSON is built in SQL (ST_AsGeoJSON, 7 decimals ≈ 1 cm); coordinates are lon/lat.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services.errors import InvalidInput, NotFound
from backend.services.grid_levels import Level, get_level
from backend.services.scope import CITY, Scope, area_clause, bound
from geo import crs as geocrs

GEOJSON_DIGITS = 7
# Locate rule: a point on the boundary shared by several cells belongs to the one whose code
# sorts first. Deterministic, and the same rule every later spatial assignment uses.
BOUNDARY_RULE = (
    "A point on a boundary shared by several cells belongs to the cell whose code sorts first "
    "(and likewise for communities and towns)."
)


def _properties_sql(level: Level, alias: str = "t") -> str:
    props = [
        f"'code', {alias}.code",
        f"'name', {alias}.name",
        f"'version', {alias}.version",
        f"'valid_from', {alias}.valid_from",
    ]
    if level.name == "cell":
        props += [f"'community_code', {alias}.community_code", f"'town_code', {alias}.town_code"]
    elif level.name == "community":
        props.append(f"'town_code', {alias}.town_code")
    return "json_build_object(" + ", ".join(props) + ")"


def _feature_sql(level: Level, alias: str = "t", extra_props: str = "") -> str:
    props = _properties_sql(level, alias)
    if extra_props:
        props = f"({props}::jsonb || {extra_props})"
    return (
        f"json_build_object('type', 'Feature', 'id', {alias}.code, "
        f"'geometry', ST_AsGeoJSON({alias}.geom, {GEOJSON_DIGITS})::json, "
        f"'properties', {props})"
    )


def parse_bbox(raw: str | None) -> tuple[float, float, float, float] | None:
    if not raw:
        return None
    try:
        values = tuple(float(v) for v in raw.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
        raise InvalidInput(
            "bbox must be minLon,minLat,maxLon,maxLat with min < max.",
            errors=[{"in": "query", "field": "bbox", "messages": ["malformed bbox"]}],
        )
    if not (
        -180 <= values[0] <= 180
        and -180 <= values[2] <= 180
        and -90 <= values[1] <= 90
        and -90 <= values[3] <= 90
    ):
        raise InvalidInput(
            "bbox is outside lon/lat range.",
            errors=[{"in": "query", "field": "bbox", "messages": ["out of range"]}],
        )
    return values  # type: ignore[return-value]


def list_features(
    session: Session,
    level_name: str,
    *,
    town: str | None = None,
    community: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    offset: int = 0,
    limit: int = 100,
    with_geometry: bool = True,
    scope: Scope = CITY,
) -> tuple[list[dict[str, Any]], int]:
    """One page of features of a level, ordered by code, and the total count matched."""
    level = get_level(level_name)
    where = [area_clause(scope, level.name)]
    params: dict[str, Any] = {"offset": offset, "limit": limit, **scope.params}
    if town:
        if level.name == "town":
            where.append("t.code = :town")
        elif level.name in ("community", "cell"):
            where.append("t.town_code = :town")
        params["town"] = town
    if community:
        if level.name == "community":
            where.append("t.code = :community")
        elif level.name == "cell":
            where.append("t.community_code = :community")
        params["community"] = community
    if bbox:
        where.append(
            "t.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490) AND "
            "ST_Intersects(t.geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490))"
        )
        params.update(dict(zip(("x0", "y0", "x1", "y1"), bbox, strict=True)))
    clause = " AND ".join(where)
    total = session.scalar(bound(f"SELECT count(*) FROM {level.table} t WHERE {clause}", params))
    feature = (
        _feature_sql(level)
        if with_geometry
        else (
            f"json_build_object('type', 'Feature', 'id', t.code, 'geometry', NULL, "
            f"'properties', {_properties_sql(level)})"
        )
    )
    rows = session.scalars(
        bound(
            # Page first, then build GeoJSON only for the rows of the page.
            f"SELECT {feature} FROM (SELECT * FROM {level.table} t WHERE {clause} "
            f"ORDER BY t.code OFFSET :offset LIMIT :limit) t ORDER BY t.code",
            params,
        )
    ).all()
    return list(rows), int(total or 0)


def get_feature(
    session: Session, level_name: str, code: str, scope: Scope = CITY
) -> dict[str, Any]:
    """One area with its parents, area in m², and (for cells) its neighbours."""
    level = get_level(level_name)
    if not level.code_pattern.fullmatch(code):
        raise NotFound(f"No {level.name} with code {code!r}.")
    extra = "jsonb_build_object('area_m2', round(gp_area_m2(t.geom)::numeric, 1))"
    feature = session.scalar(
        bound(
            f"SELECT {_feature_sql(level, extra_props=extra)} FROM {level.table} t "
            f"WHERE t.code = :code AND {area_clause(scope, level.name)}",
            {"code": code, **scope.params},
        )
    )
    if feature is None:
        raise NotFound(f"No {level.name} with code {code!r}.")
    props = feature["properties"]
    props["parents"] = _parents(session, level, props)
    props["neighbours"] = [
        dict(r._mapping)
        for r in session.execute(
            text(
                f"SELECT n.code, n.name, round(ST_Length(ST_Intersection("
                f"  ST_Boundary(t.geom), ST_Boundary(n.geom))::geography)::numeric, 1)::float "
                f"  AS shared_boundary_m "
                f"FROM {level.table} t JOIN {level.table} n "
                f"  ON n.code <> t.code AND n.geom && t.geom AND ST_Intersects(n.geom, t.geom) "
                f"WHERE t.code = :code ORDER BY n.code"
            ),
            {"code": code},
        )
    ]
    return feature


def _parents(session: Session, level: Level, props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if level.name in ("community", "cell"):
        out["town"] = _name_of(session, "town", props["town_code"])
    if level.name == "cell":
        out["community"] = _name_of(session, "community", props["community_code"])
    if level.name != "city":
        city = session.execute(text("SELECT code, name FROM city ORDER BY code LIMIT 1")).first()
        out["city"] = dict(city._mapping) if city else None
    return out


def _name_of(session: Session, table: str, code: str) -> dict[str, Any]:
    name = session.scalar(text(f"SELECT name FROM {table} WHERE code = :c"), {"c": code})
    return {"code": code, "name": name}


def locate(
    session: Session, lon: float, lat: float, crs: str = "wgs84", scope: Scope = CITY
) -> dict[str, Any]:
    """Town, community and cell for a point given in any supported CRS (404 outside the grid
    or outside the caller's territory: the two are not told apart)."""
    try:
        x, y = geocrs.to_cgcs2000(geocrs.normalize_crs(crs), lon, lat)
    except ValueError as exc:
        raise InvalidInput(
            str(exc), errors=[{"in": "query", "field": "crs", "messages": [str(exc)]}]
        ) from exc
    # The boundary rule picks one cell first; only then is the scope applied, so a point on
    # the edge of a worker's cell is not "theirs" by a different rule than everyone else's.
    row = session.execute(
        bound(
            "SELECT c.code, c.name, c.community_code, m.name AS community_name, c.town_code, "
            "       t.name AS town_name, ST_Intersects(ST_Boundary(c.geom), p.g) AS on_boundary "
            "FROM (SELECT c.* FROM (SELECT ST_SetSRID(ST_MakePoint(:x, :y), 4490) AS g) p "
            "      JOIN grid_cell c ON ST_Intersects(c.geom, p.g) ORDER BY c.code LIMIT 1) c "
            "CROSS JOIN (SELECT ST_SetSRID(ST_MakePoint(:x, :y), 4490) AS g) p "
            "JOIN community m ON m.code = c.community_code JOIN town t ON t.code = c.town_code "
            f"WHERE {area_clause(scope, 'cell', 'c')}",
            {"x": x, "y": y, **scope.params},
        )
    ).first()
    if row is None:
        raise NotFound(
            f"The point ({lon}, {lat}) [{crs}] lies in no grid cell.",
            point={"lon": x, "lat": y, "crs": "cgcs2000"},
        )
    return {
        "point": {"lon": round(x, 8), "lat": round(y, 8), "crs": "cgcs2000"},
        "town": {"code": row.town_code, "name": row.town_name},
        "community": {"code": row.community_code, "name": row.community_name},
        "cell": {"code": row.code, "name": row.name},
        "on_boundary": bool(row.on_boundary),
        "rule": BOUNDARY_RULE,
    }


def boundary_history(
    session: Session, level_name: str, code: str, scope: Scope = CITY
) -> list[dict[str, Any]]:
    """Every boundary version of one area, newest first, each as a GeoJSON Feature."""
    level = get_level(level_name)
    if not level.code_pattern.fullmatch(code):
        raise NotFound(f"No {level.name} with code {code!r}, now or in the past.")
    rows = session.scalars(
        bound(
            f"SELECT json_build_object('type', 'Feature', 'id', h.id, "
            f"'geometry', ST_AsGeoJSON(h.geom, {GEOJSON_DIGITS})::json, "
            f"'properties', json_build_object('code', h.code, 'name', h.name, "
            f"'parent_code', h.parent_code, 'version', h.version, 'valid_from', h.valid_from, "
            f"'valid_to', h.valid_to, 'import_id', h.import_id, "
            f"'area_m2', round(gp_area_m2(h.geom)::numeric, 1))) "
            f"FROM grid_boundary_version h WHERE h.level = :level AND h.code = :code "
            f"AND {_in_scope_now(level, scope)} ORDER BY h.valid_from DESC",
            {"level": level.name, "code": code, **scope.params},
        )
    ).all()
    if not rows:
        raise NotFound(f"No {level.name} with code {code!r}, now or in the past.")
    return list(rows)


def _in_scope_now(level: Level, scope: Scope) -> str:
    """History is visible city-wide; elsewhere only for areas now in the caller's territory."""
    if scope.kind == "city":
        return "true"
    return (
        f"EXISTS (SELECT 1 FROM {level.table} t WHERE t.code = h.code "
        f"AND {area_clause(scope, level.name)})"
    )


def cell_at(session: Session, lon: float, lat: float, when: datetime) -> str | None:
    """The cell that held a CGCS2000 point at a past moment: how old assignments are explained."""
    return session.scalar(
        text(
            "SELECT code FROM grid_boundary_version WHERE level = 'cell' AND valid_from <= :t "
            "AND (valid_to IS NULL OR valid_to > :t) "
            "AND ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4490)) ORDER BY code LIMIT 1"
        ),
        {"t": when, "x": lon, "y": lat},
    )
