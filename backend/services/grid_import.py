"""Import one level of grid boundaries from a GeoJSON or zipped Shapefile.

All-or-nothing by default: a file with a rejected feature or a topology error changes nothing
(unless `partial` or `repair` says otherwise), and every run leaves a report in `grid_import`.
Coordinates are converted to CGCS2000 on entry; a missing parent is found spatially.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from backend.models import GridImport
from backend.services import audit, placement
from backend.services.errors import Conflict, InvalidInput
from backend.services.grid_levels import Level, get_level
from backend.services.grid_qa import (
    ERROR_CHECKS,
    QaThresholds,
    create_qa_relations,
    fill_parents,
    index_subject,
    run_checks,
)
from geo import crs as geocrs
from geo import topology
from geo.readers import RawFeature, ReadError, read_features

STATEMENT_TIMEOUT_S = 90  # per statement of an import; a tiling of Dongguan needs ~1 s
_UNSAFE = re.compile(r"[\x00\ud800-\udfff]")

# Generous box around China: anything outside is not lon/lat (e.g. projected metres).
CHINA_BOUNDS = (73.0, 3.0, 136.0, 54.0)


@dataclass(frozen=True)
class ImportOptions:
    level: str
    code_field: str = "code"
    name_field: str = "name"
    parent_field: str | None = "parent_code"  # absent or empty → parent found spatially
    crs: str = "wgs84"
    repair: bool = False  # repair invalid rings, cut overlaps, fill gaps, clip to parent
    partial: bool = False  # apply the good features even when some are rejected
    dry_run: bool = False
    encoding: str | None = None  # for Shapefiles without a .cpg
    tolerance_m2: float = 1.0
    sliver_m2: float = 100.0


@dataclass
class _Prepared:
    index: int
    code: str
    name: str
    parent_code: str | None
    geom: MultiPolygon


def import_boundaries(
    session: Session,
    data: bytes,
    source_name: str,
    options: ImportOptions,
    *,
    user_id: int | None = None,
) -> GridImport:
    level = get_level(options.level)
    try:
        source_crs = geocrs.normalize_crs(options.crs)
    except ValueError as exc:
        raise InvalidInput(
            str(exc), errors=[{"in": "form", "field": "crs", "messages": [str(exc)]}]
        ) from exc
    try:
        read = read_features(data, source_name, options.encoding)
    except ReadError as exc:
        raise InvalidInput(str(exc)) from exc
    if not read.features:
        raise InvalidInput("The file contains no features.")

    # Imports of one level run one at a time: each is judged against the state it will change.
    locked = session.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"),
        {"key": f"gridpatrol.grid_import.{level.name}"},
    )
    if not locked:
        raise Conflict(f"Another {level.name} import is running; retry when it has finished.")
    source_name = printable(source_name)[:200] or "upload"
    record = GridImport(
        level=level.name,
        source_name=source_name,
        source_crs=source_crs,
        options=asdict(options),
        status="rejected",
        report={},
        created_by=user_id,
    )
    session.add(record)
    session.flush()

    rejected: dict[int, dict[str, Any]] = {}
    prepared = _prepare(read.features, level, options, source_crs, read.source_crs, rejected)
    thresholds = QaThresholds(options.tolerance_m2, options.sliver_m2)
    session.execute(
        text("SELECT set_config('statement_timeout', :ms, true)"),
        {"ms": str(STATEMENT_TIMEOUT_S * 1000)},
    )
    savepoint = session.begin_nested()
    try:
        create_qa_relations(session)
        _stage(session, level, prepared)
        invalid = _repair_invalid(session, level, rejected)
        _resolve_parents(session, level, rejected)
        session.execute(
            text("DELETE FROM qa_subject WHERE focus AND idx = ANY(:bad)"), {"bad": list(rejected)}
        )
        fill_parents(session, level)
        index_subject(session)
        _refuse_pathological_overlap(session)
        qa = run_checks(session, thresholds, all_parents=False)
        qa["invalid"], qa["invalid_count"] = invalid[: thresholds.limit], len(invalid)
        repairs: dict[str, list[str]] = {}
        if options.repair:
            repairs = _repair_topology(session)
            after = run_checks(session, thresholds, all_parents=False)
            after["invalid"], after["invalid_count"] = [], 0
        else:
            after = qa
        topology_errors = {c: after[f"{c}_count"] for c in ERROR_CHECKS if after[f"{c}_count"]}
        accepted = not topology_errors and (options.partial or not rejected)
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        moves: list[dict[str, Any]] = []
        if accepted and not options.dry_run:
            counts, moves = _apply(session, level, record.id)
            savepoint.commit()
        else:
            if accepted:
                counts = _count_changes(session, level)
            savepoint.rollback()
    except OperationalError as exc:
        if savepoint.is_active:
            savepoint.rollback()
        if getattr(exc.orig, "pgcode", None) == "57014":  # statement_timeout
            raise InvalidInput(
                f"The import needed more than {STATEMENT_TIMEOUT_S} s of database work; "
                "split the file, or check it for massively overlapping features."
            ) from exc
        raise
    except Exception:
        if savepoint.is_active:
            savepoint.rollback()
        raise

    by_code = {p.code: p.index for p in prepared}
    _add_indexes(qa, by_code)
    status = "dry_run" if accepted and options.dry_run else ("applied" if accepted else "rejected")
    record.status = status
    record.report = {
        "status": status,
        "level": level.name,
        "source": {
            "name": source_name,
            "driver": read.driver,
            "declared_crs": read.source_crs,
            "crs": source_crs,
            "notes": read.notes,
        },
        "features": {
            "read": len(read.features),
            "accepted": len(prepared) - len(rejected) if accepted else 0,
            "rejected": len(rejected),
            **counts,
        },
        "rejected": sorted(rejected.values(), key=lambda r: r["index"]),
        "qa": qa,
        "repairs": repairs,
        "remaining_errors": topology_errors,
        "reasons": _summary(status, rejected, topology_errors, options),
        "entities_moved": {"total": sum(m["entities"] for m in moves), "moves": moves[:500]},
    }
    session.flush()
    audit.record(
        session,
        "import",
        "grid_import",
        record.id,
        changes={
            "status": {"from": None, "to": status},
            "level": {"from": None, "to": level.name},
            "source": {"from": None, "to": source_name},
            **{k: {"from": None, "to": v} for k, v in counts.items()},
        },
    )
    return record


def _prepare(
    features: list[RawFeature],
    level: Level,
    options: ImportOptions,
    source_crs: str,
    declared_crs: str | None,
    rejected: dict[int, dict[str, Any]],
) -> list[_Prepared]:
    """Validate properties and geometry types, convert coordinates; pure Python, no database."""

    def reject(f: RawFeature, code: str | None, reason: str) -> None:
        safe = printable(code) if code is not None else None
        rejected.setdefault(f.index, {"index": f.index, "code": safe, "reasons": []})[
            "reasons"
        ].append(reason)

    codes = Counter(_text(f.properties.get(options.code_field)) for f in features)
    candidates: list[_Prepared] = []
    for f in features:
        code = _text(f.properties.get(options.code_field))
        name = _text(f.properties.get(options.name_field))
        parent = _text(f.properties.get(options.parent_field)) if options.parent_field else None
        if f.error:
            reject(f, code, f.error)
        if any(v is not None and printable(v) != v for v in (code, name, parent)):
            reject(f, code, "code, name or parent contains a NUL or an invalid character")
            continue
        if not code:
            reject(f, code, f"missing code (property {options.code_field!r})")
        elif not level.code_pattern.fullmatch(code):
            reject(f, code, f"malformed {level.name} code {code!r}: expected {level.code_hint}")
        elif codes[code] > 1:
            reject(f, code, f"code {code!r} appears {codes[code]} times in the file")
        if not name:
            reject(f, code, f"missing name (property {options.name_field!r})")
        geom = _polygonal(f.geometry) if f.geometry is not None else None
        if f.geometry is not None and geom is None:
            reject(f, code, f"geometry is a {f.geometry.geom_type}, not a polygon")
        elif geom is not None and geom.is_empty:
            reject(f, code, "geometry is empty")
        elif geom is not None and f.index not in rejected:
            candidates.append(_Prepared(f.index, code or "", name or "", parent, geom))
    if not candidates:
        return []
    # Convert every vertex of every feature in one vectorised call.
    geoms = np.array([c.geom for c in candidates], dtype=object)
    projected = _projected_transformer(declared_crs)
    if projected is not None:
        geoms = shapely.transform(geoms, projected)
    geoms = geocrs.transform_geometry(geoms, source_crs, "cgcs2000")
    bounds = shapely.bounds(geoms)
    x0, y0, x1, y1 = CHINA_BOUNDS
    inside = (
        (bounds[:, 0] >= x0) & (bounds[:, 2] <= x1) & (bounds[:, 1] >= y0) & (bounds[:, 3] <= y1)
    )
    out: list[_Prepared] = []
    for candidate, geom, ok in zip(candidates, geoms, inside, strict=True):
        if ok:
            out.append(
                _Prepared(
                    candidate.index, candidate.code, candidate.name, candidate.parent_code, geom
                )
            )
        else:
            rejected[candidate.index] = {
                "index": candidate.index,
                "code": candidate.code,
                "reasons": [
                    "coordinates are outside China's lon/lat range "
                    "(projected coordinates need a .prj or a conversion first)"
                ],
            }
    return out


def _stage(session: Session, level: Level, prepared: list[_Prepared]) -> None:
    """Load the features into qa_subject (focus) beside the level's other current features."""
    session.execute(text("DROP TABLE IF EXISTS grid_stage"))
    session.execute(
        text(
            "CREATE TEMP TABLE grid_stage (idx int PRIMARY KEY, code text, name text, "
            "parent_code text, raw geometry) ON COMMIT DROP"
        )
    )
    if prepared:
        session.execute(
            text(
                "INSERT INTO grid_stage VALUES (:idx, :code, :name, :parent, "
                "ST_SetSRID(ST_GeomFromWKB(:wkb), 4490))"
            ),
            [
                {
                    "idx": p.index,
                    "code": p.code,
                    "name": p.name,
                    "parent": p.parent_code,
                    "wkb": shapely.to_wkb(p.geom),
                }
                for p in prepared
            ],
        )
    parent_col = level.parent_column or (
        "NULL" if level.name == "city" else "(SELECT min(code) FROM city)"
    )
    session.execute(
        text(
            f"INSERT INTO qa_subject (code, parent_code, geom, focus) "
            f"SELECT code, {parent_col}, geom, false FROM {level.table} t "
            f"WHERE NOT EXISTS (SELECT 1 FROM grid_stage s WHERE s.code = t.code)"
        )
    )


def _repair_invalid(
    session: Session, level: Level, rejected: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Report invalid rings with their repaired form, and stage the repaired geometry."""
    invalid = [
        dict(r._mapping)
        for r in session.execute(
            text(
                "SELECT idx AS index, code, reason(d) AS reason, "
                "ST_AsGeoJSON(location(d), 7)::json AS location, "
                "ST_AsGeoJSON(ST_Multi(ST_CollectionExtract(ST_MakeValid(raw), 3)), 7)::json "
                "AS repaired "
                "FROM grid_stage, ST_IsValidDetail(raw) d WHERE NOT valid(d) ORDER BY idx"
            )
        )
    ]
    session.execute(
        text(
            "INSERT INTO qa_subject (code, idx, parent_code, geom, focus) "
            "SELECT code, idx, nullif(parent_code, ''), "
            "       ST_Multi(ST_CollectionExtract(ST_MakeValid(raw), 3)), true "
            "FROM grid_stage"
        )
    )
    for r in session.execute(
        text(
            "SELECT idx, code FROM qa_subject "
            "WHERE focus AND (ST_IsEmpty(geom) OR ST_Area(geom) = 0)"
        )
    ):
        rejected[r.idx] = {
            "index": r.idx,
            "code": r.code,
            "reasons": ["geometry has no area left once made valid"],
        }
    return invalid


def _resolve_parents(session: Session, level: Level, rejected: dict[int, dict[str, Any]]) -> None:
    parent = level.parent_level
    if parent is None:
        session.execute(text("UPDATE qa_subject SET parent_code = NULL WHERE focus"))
        return
    # A missing parent: the one holding the feature's point-on-surface, else the one sharing
    # the largest area with it.
    session.execute(
        text(
            f"UPDATE qa_subject s SET parent_code = ("
            f"  SELECT p.code FROM {parent.table} p WHERE ST_Intersects(p.geom, s.geom) "
            f"  ORDER BY ST_Intersects(p.geom, ST_PointOnSurface(s.geom)) DESC, "
            f"           ST_Area(ST_Intersection(p.geom, s.geom)) DESC, p.code LIMIT 1) "
            f"WHERE s.focus AND s.parent_code IS NULL"
        )
    )
    for r in session.execute(
        text(
            f"SELECT s.idx, s.code, s.parent_code FROM qa_subject s WHERE s.focus AND "
            f"(s.parent_code IS NULL OR NOT EXISTS "
            f" (SELECT 1 FROM {parent.table} p WHERE p.code = s.parent_code))"
        )
    ):
        if level.name == "town" and r.parent_code is None:
            continue  # towns may come before the city outline
        reason = (
            f"unknown parent {parent.name} {r.parent_code!r}"
            if r.parent_code
            else f"no {parent.name} contains this feature"
        )
        rejected.setdefault(r.idx, {"index": r.idx, "code": r.code, "reasons": []})[
            "reasons"
        ].append(reason)


def _repair_topology(session: Session) -> dict[str, list[str]]:
    """Cut overlaps, clip to the parent, fill gaps; returns the codes each step changed."""
    cut = [r.code for r in session.execute(text(topology.CUT_OVERLAPS))]
    clipped = [
        r.code
        for r in session.execute(
            text(
                "UPDATE qa_subject s SET geom = ST_Multi(ST_CollectionExtract("
                "  ST_MakeValid(ST_Intersection(s.geom, p.geom)), 3)) "
                "FROM qa_parent p WHERE s.focus AND p.code = s.parent_code "
                "AND NOT ST_CoveredBy(s.geom, p.geom) "
                "AND gp_area_m2(ST_Difference(s.geom, p.geom)) > 0 RETURNING s.code"
            )
        )
    ]
    filled = [r.code for r in session.execute(text(topology.FILL_GAPS))]
    return {
        "overlaps_cut": sorted(cut),
        "clipped_to_parent": sorted(clipped),
        "gaps_filled": sorted(filled),
    }


def _changes_sql(level: Level) -> str:
    parent_diff = (
        f"OR t.{level.parent_column} IS DISTINCT FROM s.parent_code" if level.parent_column else ""
    )
    old_parent = f"t.{level.parent_column}" if level.parent_column else "NULL::text"
    return (
        f"SELECT s.code, s.parent_code, s.geom, (t.code IS NULL) AS is_new, "
        f"t.name AS old_name, {old_parent} AS old_parent, t.version AS old_version, "
        f"(t.code IS NULL OR NOT ST_Equals(t.geom, s.geom)) AS geom_changed "
        f"FROM qa_subject s JOIN grid_stage g ON g.code = s.code "
        f"LEFT JOIN {level.table} t ON t.code = s.code "
        f"WHERE s.focus AND (t.code IS NULL OR t.name IS DISTINCT FROM g.name {parent_diff} "
        f"OR NOT ST_Equals(t.geom, s.geom))"
    )


def _count_changes(session: Session, level: Level) -> dict[str, int]:
    row = session.execute(
        text(
            f"SELECT count(*) FILTER (WHERE is_new) AS created, "
            f"count(*) FILTER (WHERE NOT is_new) AS updated FROM ({_changes_sql(level)}) c"
        )
    ).one()
    total = session.scalar(text("SELECT count(*) FROM qa_subject WHERE focus"))
    return {
        "created": row.created,
        "updated": row.updated,
        "unchanged": total - row.created - row.updated,
    }


def _apply(
    session: Session, level: Level, import_id: int
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Upsert changed features and version their boundaries, set-based."""
    counts = _count_changes(session, level)
    # One instant for the whole import: every boundary it changes takes effect together.
    now = session.scalar(text("SELECT clock_timestamp()"))
    session.execute(text("DROP TABLE IF EXISTS grid_changes"))
    session.execute(
        text(
            f"CREATE TEMP TABLE grid_changes ON COMMIT DROP AS "
            f"SELECT c.*, g.name AS new_name FROM ({_changes_sql(level)}) c "
            f"JOIN grid_stage g USING (code)"
        )
    )
    session.execute(
        text(
            "UPDATE grid_boundary_version h SET valid_to = :now "
            "FROM grid_changes c WHERE h.level = :level AND h.code = c.code AND h.valid_to IS NULL"
        ),
        {"level": level.name, "now": now},
    )
    cols, vals, sets = (
        ["code", "name", "geom"],
        ["c.code", "c.new_name", "c.geom"],
        ["name = EXCLUDED.name", "geom = EXCLUDED.geom"],
    )
    if level.parent_column:
        cols.append(level.parent_column)
        vals.append("c.parent_code")
        sets.append(f"{level.parent_column} = EXCLUDED.{level.parent_column}")
    if level.name == "cell":
        cols.append("town_code")
        vals.append("(SELECT town_code FROM community WHERE code = c.parent_code)")
        sets.append("town_code = EXCLUDED.town_code")
    session.execute(
        text(
            f"INSERT INTO {level.table} ({', '.join(cols)}, valid_from) "
            f"SELECT {', '.join(vals)}, :now FROM grid_changes c "
            f"ON CONFLICT (code) DO UPDATE SET {', '.join(sets)}, "
            f"version = {level.table}.version + 1, valid_from = EXCLUDED.valid_from"
        ),
        {"now": now},
    )
    parent_expr = (
        f"t.{level.parent_column}"
        if level.parent_column
        else ("NULL" if level.name == "city" else "(SELECT min(code) FROM city)")
    )
    session.execute(
        text(
            f"INSERT INTO grid_boundary_version "
            f"(level, code, name, parent_code, geom, version, valid_from, import_id) "
            f"SELECT :level, t.code, t.name, {parent_expr}, t.geom, t.version, t.valid_from, :imp "
            f"FROM {level.table} t JOIN grid_changes c USING (code)"
        ),
        {"level": level.name, "imp": import_id},
    )
    _audit_changes(session, level, import_id)
    moves = _replace_entities(session, now) if level.name == "cell" else []
    return counts, moves


# Everything the redrawn cells covered before or cover now: only entities in there can move.
_REDRAWN_AREA = (
    "SELECT ST_Union(g) FROM ("
    "  SELECT h.geom AS g FROM grid_boundary_version h JOIN grid_changes c USING (code) "
    "  WHERE h.level = 'cell' AND h.valid_to = :now AND c.geom_changed "
    "  UNION ALL SELECT t.geom FROM grid_cell t JOIN grid_changes c USING (code) "
    "  WHERE c.geom_changed) u"
)


def _replace_entities(session: Session, now: Any) -> list[dict[str, Any]]:
    return placement.replace_in_area(session, _REDRAWN_AREA, {"now": now})


def _audit_changes(session: Session, level: Level, import_id: int) -> None:
    """One audit event per created or changed area (set-based)."""
    for action, is_new in (("create", True), ("update", False)):
        audit.record_from_query(
            session,
            action,
            level.name,
            f"SELECT c.code AS object_id, jsonb_strip_nulls(jsonb_build_object("
            f"'name', CASE WHEN c.old_name IS DISTINCT FROM c.new_name THEN "
            f"  jsonb_build_object('from', c.old_name, 'to', c.new_name) END, "
            f"'parent_code', CASE WHEN c.old_parent IS DISTINCT FROM c.parent_code THEN "
            f"  jsonb_build_object('from', c.old_parent, 'to', c.parent_code) END, "
            f"'boundary', CASE WHEN c.geom_changed THEN jsonb_build_object("
            f"  'from', c.old_version, 'to', t.version) END, "
            f"'import_id', jsonb_build_object('from', NULL, 'to', :imp))) AS changes "
            f"FROM grid_changes c JOIN {level.table} t USING (code) WHERE c.is_new = :new",
            {"imp": import_id, "new": is_new},
        )


def _add_indexes(qa: dict[str, Any], by_code: dict[str, int]) -> None:
    """Name the file's feature index beside each code in the QA lists."""
    for item in qa.get("overlaps", []):
        item["index_a"], item["index_b"] = by_code.get(item["code_a"]), by_code.get(item["code_b"])
    for key in ("outside_parent", "slivers"):
        for item in qa.get(key, []):
            item["index"] = by_code.get(item["code"])


def _summary(
    status: str,
    rejected: dict[int, dict[str, Any]],
    errors: dict[str, int],
    options: ImportOptions,
) -> list[str]:
    if status != "rejected":
        return []
    out = []
    if rejected and not options.partial:
        out.append(
            f"{len(rejected)} feature(s) rejected; nothing was applied "
            "(pass partial=true to apply the others)."
        )
    if errors:
        listed = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in errors.items())
        hint = "" if options.repair else " (pass repair=true to repair and accept)"
        out.append(f"Topology errors: {listed}{hint}.")
    return out


def _refuse_pathological_overlap(session: Session) -> None:
    """A tiling's bounding boxes overlap only near neighbours; a file where thousands of
    features pile on each other would make the overlap check quadratic, so it is refused."""
    features, pairs = session.execute(
        text(
            "SELECT (SELECT count(*) FROM qa_subject WHERE focus), "
            "(SELECT count(*) FROM qa_subject a JOIN qa_subject b "
            " ON a.code < b.code AND a.geom && b.geom AND (a.focus OR b.focus))"
        )
    ).one()
    if pairs > 30 * features + 1000:
        raise InvalidInput(
            f"The {features} features' bounding boxes overlap in {pairs} pairs: that is not a "
            "tiling of grid areas (a duplicated layer, or the wrong level?)."
        )


def printable(value: str) -> str:
    """The text with NUL and lone surrogates replaced, safe for PostgreSQL and JSON."""
    return _UNSAFE.sub("\ufffd", value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # codes stored as numbers in DBF files
    value = str(value).strip()
    return value or None


def _polygonal(geom: BaseGeometry) -> MultiPolygon | None:
    geom = shapely.force_2d(geom)
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    if isinstance(geom, MultiPolygon):
        return geom
    if geom.geom_type == "GeometryCollection":
        polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon | MultiPolygon)]
        if polys and len(polys) == len(geom.geoms):
            parts = [p for g in polys for p in (g.geoms if isinstance(g, MultiPolygon) else [g])]
            return MultiPolygon(parts)
    return None


def _projected_transformer(declared_crs: str | None):  # type: ignore[no-untyped-def]
    """A vectorised projected → CGCS2000 lon/lat converter when the file declares a projection."""
    if not declared_crs:
        return None
    from pyproj import CRS, Transformer

    try:
        source = CRS.from_user_input(declared_crs)
    except Exception:
        return None
    if not source.is_projected:
        return None
    transformer = Transformer.from_crs(source, "EPSG:4490", always_xy=True)

    def convert(coords: Any) -> Any:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return convert
