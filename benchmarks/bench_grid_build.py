"""grid_build: build the synthetic city in memory, then load it into the scratch database."""

from __future__ import annotations

from bench_common import BENCH_PASSWORD, BenchContext, Figures, median_time, timed
from sqlalchemy import text

from backend.services.demo import load_demo
from geo.demo_city import build_demo_city

REPEATS = 3


def run(ctx: BenchContext) -> Figures:
    """build_demo_city() median of 3; load_demo() (which builds the city again) plus commit."""
    build_s = median_time(lambda: build_demo_city(seed=ctx.seed), REPEATS)
    ctx.city = build_demo_city(seed=ctx.seed)

    def load() -> int:
        with ctx.sessions() as session:
            result = load_demo(session, BENCH_PASSWORD, seed=ctx.seed)
            session.commit()
            if not result.loaded:
                raise RuntimeError("the scratch database already had a grid")
        return result.cells

    load_s, cells = timed(load)
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM city) + (SELECT count(*) FROM town) "
                "+ (SELECT count(*) FROM community) + (SELECT count(*) FROM grid_cell) AS areas, "
                "(SELECT count(*) FROM grid_boundary_version) AS versions"
            )
        ).one()
        conn.execute(text("ANALYZE"))
    city = ctx.demo_city()
    return {
        "build_demo_city_median_s": round(build_s, 3),
        "load_demo_s": round(load_s, 3),
        "load_demo_minus_build_s": round(load_s - build_s, 3),
        "towns": len(city.towns),
        "communities": len(city.communities),
        "cells": cells,
        "rows_inserted": int(rows.areas) + int(rows.versions),
    }
