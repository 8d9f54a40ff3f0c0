"""Topology QA of one grid level: invalid rings, overlaps, gaps, features outside their parent,
slivers. The SQL lives in geo.topology; this module prepares its input relations and runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services.grid_levels import LEVELS, Level, get_level
from geo import topology

ERROR_CHECKS = ("invalid", "overlaps", "gaps", "outside_parent")


@dataclass(frozen=True)
class QaThresholds:
    tolerance_m2: float = 1.0  # below this, an overlap or gap is numeric noise
    sliver_m2: float = 100.0  # polygon parts smaller than this are reported as slivers
    limit: int = 500  # at most this many items per list (counts are always complete)


def create_qa_relations(session: Session) -> None:
    """Empty temp relations for geo.topology; dropped at commit, recreated if already there."""
    session.execute(text("DROP TABLE IF EXISTS qa_subject, qa_parent"))
    session.execute(
        text(
            "CREATE TEMP TABLE qa_subject (code text PRIMARY KEY, idx int, parent_code text, "
            "geom geometry(MultiPolygon, 4490) NOT NULL, focus boolean NOT NULL) ON COMMIT DROP"
        )
    )
    session.execute(
        text(
            "CREATE TEMP TABLE qa_parent (code text PRIMARY KEY, "
            "geom geometry(MultiPolygon, 4490) NOT NULL) ON COMMIT DROP"
        )
    )


def fill_parents(session: Session, level: Level) -> None:
    parent = level.parent_level
    if parent is not None:
        session.execute(text(f"INSERT INTO qa_parent SELECT code, geom FROM {parent.table}"))
    session.execute(text("CREATE INDEX ON qa_parent USING gist (geom)"))


def index_subject(session: Session) -> None:
    session.execute(text("CREATE INDEX ON qa_subject USING gist (geom)"))
    session.execute(text("ANALYZE qa_subject"))


def run_checks(session: Session, thresholds: QaThresholds, *, all_parents: bool) -> dict[str, Any]:
    """Run every check over qa_subject/qa_parent; returns lists plus complete counts."""
    params = {
        "tol": thresholds.tolerance_m2,
        "sliver": thresholds.sliver_m2,
        "limit": 1_000_000,
        "all_parents": all_parents,
    }
    report: dict[str, Any] = {}
    for name, sql in (
        ("overlaps", topology.OVERLAPS),
        ("gaps", topology.GAPS),
        ("outside_parent", topology.OUTSIDE_PARENT),
        ("slivers", topology.SLIVERS),
    ):
        rows = [dict(r._mapping) for r in session.execute(text(sql), params)]
        report[name] = rows[: thresholds.limit]
        report[f"{name}_count"] = len(rows)
    return report


def level_qa(session: Session, level_name: str, thresholds: QaThresholds) -> dict[str, Any]:
    """QA of every current feature of one level against its parent level."""
    level = get_level(level_name)
    create_qa_relations(session)
    parent_col = level.parent_column or "NULL"
    if level.name == "town":
        parent_col = "(SELECT min(code) FROM city)"
    session.execute(
        text(
            f"INSERT INTO qa_subject (code, parent_code, geom, focus) "
            f"SELECT code, {parent_col}, geom, true FROM {level.table}"
        )
    )
    fill_parents(session, level)
    index_subject(session)
    invalid = [
        dict(r._mapping)
        for r in session.execute(
            text(
                f"SELECT code, ST_IsValidReason(geom) AS reason FROM {level.table} "
                f"WHERE NOT ST_IsValid(geom) ORDER BY code LIMIT :limit"
            ),
            {"limit": thresholds.limit},
        )
    ]
    counts = session.execute(
        text(
            f"SELECT count(*) AS features, "
            f"coalesce(round(sum(gp_area_m2(geom))::numeric, 0), 0)::float AS area_m2 "
            f"FROM {level.table}"
        )
    ).one()
    report = run_checks(session, thresholds, all_parents=True)
    report["invalid"] = invalid
    report["invalid_count"] = len(invalid)
    report = {"level": level.name, "features": counts.features, "area_m2": counts.area_m2, **report}
    report["ok"] = all(report[f"{c}_count"] == 0 for c in ERROR_CHECKS)
    report["thresholds"] = thresholds.__dict__
    return report


def city_coverage(session: Session, thresholds: QaThresholds) -> dict[str, Any] | None:
    """Does every point of the city outline lie in a cell? (Overlaps are the cell level's.)"""
    if not session.scalar(text("SELECT count(*) FROM city")):
        return None
    create_qa_relations(session)
    session.execute(
        text(
            "INSERT INTO qa_subject (code, parent_code, geom, focus) "
            "SELECT g.code, (SELECT min(code) FROM city), g.geom, true FROM grid_cell g"
        )
    )
    session.execute(text("INSERT INTO qa_parent SELECT code, geom FROM city"))
    index_subject(session)
    params = {"tol": thresholds.tolerance_m2, "limit": thresholds.limit, "all_parents": True}
    out: dict[str, Any] = {}
    for name, sql in (("uncovered", topology.GAPS), ("outside_city", topology.OUTSIDE_PARENT)):
        rows = [dict(r._mapping) for r in session.execute(text(sql), params)]
        out[name], out[f"{name}_count"] = rows, len(rows)
    out["ok"] = not out["uncovered_count"] and not out["outside_city_count"]
    return out


def grid_qa(session: Session, levels: list[str] | None, thresholds: QaThresholds) -> dict[str, Any]:
    names = levels or [name for name in LEVELS if name != "city"]
    results = {name: level_qa(session, name, thresholds) for name in names}
    report: dict[str, Any] = {"ok": all(r["ok"] for r in results.values()), "levels": results}
    if "cell" in names:
        coverage = city_coverage(session, thresholds)
        report["city_coverage"] = coverage
        report["ok"] = report["ok"] and (coverage is None or coverage["ok"])
    return report
