"""assign: place 1.5 million market entities into the demo city's ~2,900 cells.

Three figures on the same data in the same run (DESIGN.md §4, issue "Market entities on the
map"): the full assignment as the service does it (`placement.place_all`, one set-based
statement writing the narrow `entity_placement` table), the bare PostGIS join with no writes
(the floor), and a GIS analyst's round trip (geopandas.read_postgis → sjoin → write back with
COPY, the fastest write there is). Also: a second full run when nothing moved, and the latency
of re-placing one entity, with the plan showing index use.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from typing import Any

import numpy as np
from bench_common import BenchContext, Figures, timed
from bench_locate import random_points
from sqlalchemy import text

from backend.services import placement

ENTITIES = int(os.environ.get("GRIDPATROL_BENCH_ENTITIES", "1500000"))
CHUNK = 250_000
BARE_JOIN = (
    "SELECT count(*) FROM (SELECT DISTINCT ON (e.id) e.id, c.code FROM market_entity e "
    "JOIN grid_cell c ON c.geom && e.geom AND ST_Intersects(c.geom, e.geom) "
    "WHERE e.geom IS NOT NULL ORDER BY e.id, c.code) j"
)


def run(ctx: BenchContext) -> Figures:
    rng = np.random.default_rng(ctx.seed + 4)
    figures: Figures = {"entities": ENTITIES, "cells": len(ctx.demo_city().cells)}
    figures["load_s"] = round(_load_entities(ctx, rng), 2)

    with ctx.engine.connect() as conn:
        conn.execute(text("ANALYZE market_entity"))
        conn.commit()
        bare_s, _ = timed(lambda: conn.execute(text(BARE_JOIN)).scalar())
    figures["bare_join_s"] = round(bare_s, 2)

    with ctx.sessions() as session:

        def full() -> dict[str, int]:
            result = placement.place_all(session)
            session.commit()
            return result

        full_s, totals = timed(full)
        again_s, again = timed(full)
    figures["full_assignment_s"] = round(full_s, 2)
    figures["full_assignment_rows_per_s"] = int(ENTITIES / full_s)
    figures["placed"] = totals["placed"]
    figures["outside_grid"] = totals["outside_grid"]
    figures["second_run_unchanged_s"] = round(again_s, 2)
    figures["second_run_rows_written"] = again["written"]

    figures.update(_geopandas_round_trip(ctx))
    figures.update(_single_entity(ctx))
    figures["ratio_full_vs_bare"] = round(full_s / bare_s, 2)
    if isinstance(figures.get("geopandas_round_trip_s"), float):
        figures["ratio_geopandas_vs_full"] = round(
            float(figures["geopandas_round_trip_s"]) / full_s, 2
        )
    return figures


def _load_entities(ctx: BenchContext, rng: np.random.Generator) -> float:
    """COPY synthetic entities with points inside the city (the name/address trigram indexes
    are built once at the end, as a bulk load would)."""
    xs, ys = random_points(ctx.demo_city().outline, ENTITIES, rng)
    started = time.perf_counter()
    raw: Any = ctx.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DROP INDEX IF EXISTS ix_market_entity_search_trgm")
        for start in range(0, ENTITIES, CHUNK):
            buf = io.StringIO()
            for i in range(start, min(start + CHUNK, ENTITIES)):
                buf.write(
                    f"9144190000{i:08d}\t商户{i}\t东莞市测试路{i % 997}号\t"
                    f"SRID=4490;POINT({xs[i]:.7f} {ys[i]:.7f})\tmanual\n"
                )
            buf.seek(0)
            cur.copy_expert(
                "COPY market_entity (uscc, name, registered_address, geom, "
                "location_source) FROM STDIN",
                buf,
            )
        # every entity change needs its audit event in the same transaction
        cur.execute(
            "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
            "object_id, changes) SELECT 'benchmark', 'system', 'create', 'entity', id::text, "
            "'{}' FROM market_entity"
        )
        cur.execute(
            "CREATE INDEX ix_market_entity_search_trgm ON market_entity "
            "USING gin ((name || ' ' || registered_address) gin_trgm_ops)"
        )
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def _geopandas_round_trip(ctx: BenchContext) -> Figures:
    try:
        import geopandas as gpd
    except ImportError:
        ctx.notes.append("assign: geopandas not installed; the analyst round trip is skipped")
        return {"geopandas_round_trip_s": "skipped"}
    started = time.perf_counter()
    with ctx.engine.connect() as conn:
        entities = gpd.read_postgis(
            "SELECT id, geom FROM market_entity WHERE geom IS NOT NULL", conn, geom_col="geom"
        )
        cells = gpd.read_postgis("SELECT code, geom FROM grid_cell", conn, geom_col="geom")
    read_s = time.perf_counter() - started
    t0 = time.perf_counter()
    joined = gpd.sjoin(entities, cells, how="left", predicate="intersects")
    joined = joined.sort_values(["id", "code"]).drop_duplicates("id")
    sjoin_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw: Any = ctx.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("CREATE TEMP TABLE gpd_placement (entity_id bigint, cell_code text)")
        buf = io.StringIO()
        joined[["id", "code"]].to_csv(buf, sep="\t", header=False, index=False, na_rep="\\N")
        buf.seek(0)
        cur.copy_expert("COPY gpd_placement FROM STDIN", buf)
        raw.commit()
    finally:
        raw.close()
    write_s = time.perf_counter() - t0
    return {
        "geopandas_read_s": round(read_s, 2),
        "geopandas_sjoin_s": round(sjoin_s, 2),
        "geopandas_write_s": round(write_s, 2),
        "geopandas_round_trip_s": round(time.perf_counter() - started, 2),
    }


def _single_entity(ctx: BenchContext) -> Figures:
    """Move one entity and re-place it: service latency, and the database plan."""
    with ctx.sessions() as session:
        ids = [
            int(i)
            for i in session.scalars(
                text("SELECT id FROM market_entity ORDER BY random() LIMIT 200")
            )
        ]
        samples = []
        for entity_id in ids:
            session.execute(
                text(
                    "UPDATE market_entity SET geom = ST_SetSRID(ST_MakePoint("
                    "ST_X(geom) + 0.0005, ST_Y(geom)), 4490) WHERE id = :i"
                ),
                {"i": entity_id},
            )
            t0 = time.perf_counter()
            placement.place_entities(session, [entity_id])
            samples.append(time.perf_counter() - t0)
        plan = (
            session.execute(
                text(
                    "EXPLAIN (ANALYZE, COSTS OFF) SELECT c.code FROM market_entity e "
                    "JOIN grid_cell c ON c.geom && e.geom AND ST_Intersects(c.geom, e.geom) "
                    "WHERE e.id = :i ORDER BY c.code LIMIT 1"
                ),
                {"i": ids[0]},
            )
            .scalars()
            .all()
        )
        session.rollback()
    db_ms = next(
        (line.split("Execution Time:")[1].strip() for line in plan if "Execution Time" in line), "?"
    )
    return {
        "single_replace_p50_ms": round(statistics.median(samples) * 1000, 2),
        "single_replace_p95_ms": round(float(np.percentile(samples, 95)) * 1000, 2),
        "single_locate_db_execution": db_ms,
        "single_locate_uses_index": any("Index Scan" in line for line in plan),
    }
