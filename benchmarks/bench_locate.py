"""locate: one point at a time through grid_query.locate, and many points at once.

Batch assignment is the set-based SQL of DESIGN.md §4 (one statement: ST_Intersects join,
DISTINCT ON the point so the smallest cell code wins, as in locate's boundary rule), side by side
with geopandas.sjoin on the same points and the same cells held in memory.
"""

from __future__ import annotations

import io
import statistics
import time
from typing import Any

import numpy as np
import shapely
from bench_common import BenchContext, Figures, latency_figures, timed
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon
from sqlalchemy import text
from sqlalchemy.engine import Engine

from backend.services.grid_query import locate

LOCATE_CALLS = 2_000
WARMUP_CALLS = 20
BATCH_POINTS = 100_000
REPEATS = 3

ASSIGN_SELECT = (
    "SELECT DISTINCT ON (p.id) p.id AS point_id, c.code AS cell_code "
    "FROM bench_point p JOIN grid_cell c ON ST_Intersects(c.geom, p.geom) "
    "ORDER BY p.id, c.code"
)
ASSIGN_INSERT = f"INSERT INTO bench_assignment (point_id, cell_code) {ASSIGN_SELECT}"


def random_points(
    outline: MultiPolygon, n: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """`n` uniform random lon/lat points inside the outline (rejection sampling on its box)."""
    minx, miny, maxx, maxy = outline.bounds
    shapely.prepare(outline)
    xs: list[NDArray[np.float64]] = []
    ys: list[NDArray[np.float64]] = []
    have = 0
    while have < n:
        x = rng.uniform(minx, maxx, 2 * n)
        y = rng.uniform(miny, maxy, 2 * n)
        inside = shapely.contains_xy(outline, x, y)
        xs.append(x[inside])
        ys.append(y[inside])
        have += int(inside.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def run(ctx: BenchContext) -> Figures:
    """Per-call locate latency, then SQL batch assignment vs geopandas.sjoin (points/s)."""
    city = ctx.demo_city()
    rng = np.random.default_rng(ctx.seed)
    figures: Figures = {}

    lon, lat = random_points(city.outline, LOCATE_CALLS + WARMUP_CALLS, rng)
    samples: list[float] = []
    with ctx.sessions() as session:
        for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)):
            start = time.perf_counter()
            locate(session, x, y)
            if i >= WARMUP_CALLS:
                samples.append(time.perf_counter() - start)
        session.rollback()
    figures.update(latency_figures("locate", samples))

    bx, by = random_points(city.outline, BATCH_POINTS, rng)
    sql_codes, sql_figures = _sql_batch(ctx.engine, bx, by)
    figures.update(sql_figures)
    figures.update(_sjoin_batch(ctx, bx, by, sql_codes))
    return figures


def _sql_batch(
    engine: Engine, x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[NDArray[np.object_], Figures]:
    """COPY the points in (GiST-indexed, as every geometry column is), then time the join alone
    and INSERT … SELECT of the assignment; once more without the points' index for contrast."""
    n = len(x)
    ewkb = shapely.to_wkb(shapely.set_srid(shapely.points(x, y), 4490), hex=True, include_srid=True)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_point, bench_assignment"))
        conn.execute(
            text("CREATE TABLE bench_point (id int NOT NULL, geom geometry(Point, 4490) NOT NULL)")
        )
        conn.execute(text("CREATE TABLE bench_assignment (point_id int NOT NULL, cell_code text)"))

    def load() -> None:
        raw: Any = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("DROP INDEX IF EXISTS bench_point_geom")
            cur.execute("TRUNCATE bench_point")
            buf = io.StringIO("".join(f"{i}\t{g}\n" for i, g in enumerate(ewkb.tolist())))
            cur.copy_expert("COPY bench_point (id, geom) FROM STDIN", buf)
            cur.execute("CREATE INDEX bench_point_geom ON bench_point USING gist (geom)")
            cur.execute("ANALYZE bench_point")
            raw.commit()
        finally:
            raw.close()

    def join_only() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(text(f"SELECT count(*) FROM ({ASSIGN_SELECT}) a")) or 0)

    def insert_select() -> None:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE bench_assignment"))
        with engine.begin() as conn:
            conn.execute(text(ASSIGN_INSERT))

    load_s = statistics.median(timed(load)[0] for _ in range(REPEATS))
    join_times = [timed(join_only) for _ in range(REPEATS)]
    assigned = join_times[0][1]
    join_s = statistics.median(t for t, _ in join_times)
    insert_s = statistics.median(timed(insert_select)[0] for _ in range(REPEATS))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT point_id, cell_code FROM bench_assignment")).all()
    codes = np.full(n, None, dtype=object)
    for point_id, code in rows:
        codes[point_id] = code

    with engine.begin() as conn:
        conn.execute(text("DROP INDEX bench_point_geom"))
        conn.execute(text("ANALYZE bench_point"))
    no_index_s, _ = timed(insert_select)
    return codes, {
        "batch_points": n,
        "sql_assigned": assigned,
        "sql_copy_index_points_s": round(load_s, 3),
        "sql_join_only_s": round(join_s, 3),
        "sql_insert_select_s": round(insert_s, 3),
        "sql_insert_select_pts_per_s": round(n / insert_s),
        "sql_incl_load_pts_per_s": round(n / (insert_s + load_s)),
        "sql_insert_select_no_point_index_s": round(no_index_s, 3),
    }


def _sjoin_batch(
    ctx: BenchContext, x: NDArray[np.float64], y: NDArray[np.float64], sql_codes: NDArray[Any]
) -> Figures:
    """geopandas.sjoin on the same points and cells; skipped with a note without geopandas."""
    try:
        import geopandas as gpd
    except ImportError:
        ctx.notes.append(
            "geopandas is not installed: the sjoin baseline was skipped "
            "(`.venv/bin/pip install geopandas`; it is not a project dependency)."
        )
        return {"sjoin": "skipped (geopandas missing)"}
    n = len(x)

    def load() -> tuple[Any, Any]:
        with ctx.engine.connect() as conn:
            cells = gpd.read_postgis(
                "SELECT code, geom FROM grid_cell ORDER BY code", conn, geom_col="geom"
            )
        points = gpd.GeoDataFrame(
            {"id": np.arange(n)}, geometry=gpd.points_from_xy(x, y, crs="EPSG:4490")
        )
        return cells, points

    def assign(cells: Any, points: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        joined = gpd.sjoin(points, cells, how="inner", predicate="intersects")
        sjoin_s = time.perf_counter() - start
        first = joined.sort_values(["id", "code"]).drop_duplicates("id")
        return sjoin_s, first

    load_times: list[float] = []
    sjoin_times: list[float] = []
    total_times: list[float] = []
    first: Any = None
    for _ in range(REPEATS):
        start = time.perf_counter()
        cells, points = load()
        loaded = time.perf_counter()
        sjoin_s, first = assign(cells, points)
        total_times.append(time.perf_counter() - start)
        load_times.append(loaded - start)
        sjoin_times.append(sjoin_s)
    sjoin_s = statistics.median(sjoin_times)
    total_s = statistics.median(total_times)
    codes = np.full(n, None, dtype=object)
    codes[first["id"].to_numpy()] = first["code"].to_numpy()
    mismatches = int(sum(a != b for a, b in zip(codes.tolist(), sql_codes.tolist(), strict=True)))
    return {
        "geopandas_version": gpd.__version__,
        "sjoin_load_s": round(statistics.median(load_times), 3),
        "sjoin_only_s": round(sjoin_s, 3),
        "sjoin_only_pts_per_s": round(n / sjoin_s),
        "sjoin_incl_load_dedup_s": round(total_s, 3),
        "sjoin_incl_load_pts_per_s": round(n / total_s),
        "sjoin_vs_sql_mismatches": mismatches,
    }
