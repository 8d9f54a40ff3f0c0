"""Run every benchmark in one process against a scratch copy of the database; print the figures.

    set -a; . .local/env; set +a; .venv/bin/python benchmarks/run_all.py [--json] [--only NAME ...]

A database `<dbname>_bench_<random>` is created from `gridpatrol_template` on the DATABASE_URL
server, migrated, and dropped at the end, so the main database is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_assign
import bench_grid_build
import bench_grid_import
import bench_grid_qa
import bench_http
import bench_locate
import shapely
from bench_common import BenchContext, Figures, scratch_database
from sqlalchemy import text
from sqlalchemy.engine import make_url

from backend.db import make_engine, make_sessionmaker

# Execution order: grid_build loads the city everything else uses; grid_import rewrites the cells,
# so it goes last.
BENCHMARKS: dict[str, Callable[[BenchContext], Figures]] = {
    "grid_build": bench_grid_build.run,
    "grid_qa": bench_grid_qa.run,
    "locate": bench_locate.run,
    "http": bench_http.run,
    "grid_import": bench_grid_import.run,
    "assign": bench_assign.run,  # last: its entities pin the cells (placements reference them)
}
OUT_DIR = Path(__file__).resolve().parent / "out"
TIME_BUDGET_S = 180.0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # The schema owner creates and migrates the scratch database (and the benchmark runs as
    # it: the figures are about speed, not privileges).
    base_url = os.environ.get("GRIDPATROL_MIGRATION_URL") or os.environ.get("DATABASE_URL")
    if not base_url:
        print("DATABASE_URL is not set: run `make bench`, or `set -a; . .local/env; set +a`.")
        return 2
    selected = ["grid_build", *(n for n in BENCHMARKS if n != "grid_build" and n in args.only)]
    command = _command(base_url)
    started = time.perf_counter()
    results: dict[str, Figures] = {}
    timings: dict[str, float] = {}
    with scratch_database(base_url) as url:
        engine = make_engine(url)
        ctx = BenchContext(url, engine, make_sessionmaker(engine), seed=args.seed)
        try:
            meta = _machine(ctx, url)
            for name in selected:
                t0 = time.perf_counter()
                results[name] = BENCHMARKS[name](ctx)
                timings[name] = round(time.perf_counter() - t0, 1)
        finally:
            engine.dispose()
    total_s = round(time.perf_counter() - started, 1)
    meta["loadavg_end"] = _loadavg()

    _print_report(meta, results, timings, total_s, command, ctx.notes)
    if args.json:
        OUT_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = OUT_DIR / f"bench-{stamp}.json"
        doc = {
            "command": command,
            "machine": meta,
            "results": results,
            "seconds": timings,
            "total_s": total_s,
            "notes": ctx.notes,
        }
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        print(f"JSON: {path}")
    if total_s > TIME_BUDGET_S:
        print(f"WARNING: the run took {total_s} s, over the {TIME_BUDGET_S:.0f} s budget.")
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="also write benchmarks/out/*.json")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHMARKS),
        default=list(BENCHMARKS),
        help="benchmarks to run (grid_build always runs: it loads the demo city)",
    )
    parser.add_argument("--seed", type=int, default=20171109, help="demo city and point seed")
    return parser.parse_args(argv)


def _command(base_url: str) -> str:
    """The command line that made the figures, with the database password hidden."""
    shown = make_url(base_url).render_as_string(hide_password=True)
    exe = os.path.relpath(sys.executable) if sys.executable else "python"
    return f"DATABASE_URL={shlex.quote(shown)} {shlex.join([exe, *sys.argv])}"


def _machine(ctx: BenchContext, url: str) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        pg = conn.scalar(text("SHOW server_version"))
        postgis = conn.scalar(text("SELECT postgis_lib_version()"))
        geos = conn.scalar(text("SELECT postgis_geos_version()"))
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "shapely": shapely.__version__,
        "geos_python": shapely.geos_version_string,
        "postgresql": pg,
        "postgis": postgis,
        "geos_postgis": geos,
        "database": make_url(url).database,
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str:
    """1/5/15-minute load averages: other work on the machine shows up in the figures."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _print_report(
    meta: dict[str, Any],
    results: dict[str, Figures],
    timings: dict[str, float],
    total_s: float,
    command: str,
    notes: list[str],
) -> None:
    print(
        f"machine: {meta['cores']} cores, {meta['cpu']}; Python {meta['python']}, "
        f"shapely {meta['shapely']} (GEOS {meta['geos_python']}); PostgreSQL {meta['postgresql']},"
        f" PostGIS {meta['postgis']} (GEOS {meta['geos_postgis']})"
    )
    print(f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}")
    width = max(len(k) for figures in results.values() for k in figures)
    for name, figures in results.items():
        print(f"\n{name}  ({timings[name]} s)")
        for key, value in figures.items():
            print(f"  {key:<{width}}  {value}")
    print(f"\ntotal {total_s} s (scratch database created, migrated and dropped)")
    for note in notes:
        print(f"note: {note}")
    print(f"command: {command}")


if __name__ == "__main__":
    sys.exit(main())
