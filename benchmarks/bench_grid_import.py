"""grid_import: import the demo's cells from a GCJ-02 GeoJSON file, twice.

The first import goes into a database holding the demo's towns and communities but no cells (all
2,900 are created); the second imports the same bytes again (nothing should change). This
benchmark rewrites the cells of the scratch database, so run_all runs it last.
"""

from __future__ import annotations

import json
import tracemalloc
from functools import partial
from typing import Any

from bench_common import BenchContext, Figures, PeakRss, timed
from shapely.geometry import mapping
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services.grid_import import ImportOptions, import_boundaries
from geo import crs as geocrs
from geo.demo_city import Area

SOURCE_NAME = "demo_cells_gcj02.geojson"


def export_cells_gcj02(cells: list[Area]) -> bytes:
    """The cells as an RFC 7946 FeatureCollection whose coordinates are GCJ-02 (as Amap draws)."""
    features = [
        {
            "type": "Feature",
            "properties": {"code": a.code, "name": a.name, "parent_code": a.parent_code},
            "geometry": mapping(geocrs.transform_geometry(a.geom, "cgcs2000", "gcj02")),
        }
        for a in cells
    ]
    doc = {"type": "FeatureCollection", "features": features}
    return json.dumps(doc, ensure_ascii=False).encode()


def run(ctx: BenchContext) -> Figures:
    """features/s and peak memory of import_boundaries(level=cell, crs=gcj02): create, re-import."""
    cells = ctx.demo_city().cells
    export_s, data = timed(lambda: export_cells_gcj02(cells))
    _delete_cells(ctx)
    figures: Figures = {
        "features": len(cells),
        "file_mb": round(len(data) / 1e6, 2),
        "export_gcj02_s": round(export_s, 3),
    }
    for label in ("create", "reimport"):
        with PeakRss() as rss, ctx.sessions() as session:
            seconds, feats = timed(partial(_import, session, data))
        figures[f"{label}_s"] = round(seconds, 3)
        figures[f"{label}_features_per_s"] = round(len(cells) / seconds)
        figures[f"{label}_peak_rss_delta_mib"] = rss.delta_mib
        for key in ("created", "updated", "unchanged", "rejected"):
            figures[f"{label}_{key}"] = int(feats[key])
    # One more create, untimed: tracemalloc's peak of Python allocations (it slows code ~2.5x).
    _delete_cells(ctx)
    tracemalloc.start()
    try:
        with ctx.sessions() as session:
            _import(session, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    figures["create_tracemalloc_peak_mib"] = round(peak / 2**20, 1)
    return figures


def _delete_cells(ctx: BenchContext) -> None:
    # Deleting audited rows needs their audit events in the same transaction.
    with ctx.engine.begin() as conn:
        for object_type, sql in (
            ("cell_roster", "SELECT DISTINCT cell_code FROM cell_worker"),
            ("cell", "SELECT code FROM grid_cell"),
        ):
            conn.execute(
                text(
                    "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
                    f"object_id, changes) SELECT 'benchmark', 'system', 'delete', '{object_type}', "
                    f"k, '{{}}' FROM ({sql}) s(k)"
                )
            )
        conn.execute(text("DELETE FROM cell_worker"))
        conn.execute(text("DELETE FROM grid_boundary_version WHERE level = 'cell'"))
        conn.execute(text("DELETE FROM grid_cell"))


def _import(session: Session, data: bytes) -> dict[str, Any]:
    record = import_boundaries(session, data, SOURCE_NAME, ImportOptions(level="cell", crs="gcj02"))
    if record.status != "applied":
        raise RuntimeError(f"import was {record.status}: {record.report.get('reasons')}")
    session.commit()
    return dict(record.report["features"])
