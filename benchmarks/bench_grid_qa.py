"""grid_qa: full topology QA of the demo city, one figure per level."""

from __future__ import annotations

import time

from bench_common import BenchContext, Figures

from backend.services.grid_qa import ERROR_CHECKS, QaThresholds, level_qa

LEVELS = ("town", "community", "cell")


def run(ctx: BenchContext) -> Figures:
    """Wall time of level_qa (what GET /grid/qa runs per level) for town, community and cell."""
    figures: Figures = {}
    total = 0.0
    problems = 0
    for level in LEVELS:
        with ctx.sessions() as session:
            start = time.perf_counter()
            report = level_qa(session, level, QaThresholds())
            seconds = time.perf_counter() - start
            session.rollback()  # drops the temp relations, as the API does
        total += seconds
        problems += sum(int(report[f"{c}_count"]) for c in ERROR_CHECKS)
        figures[f"{level}_s"] = round(seconds, 3)
        figures[f"{level}_features"] = int(report["features"])
    figures["total_s"] = round(total, 3)
    figures["errors_found"] = problems
    return figures
