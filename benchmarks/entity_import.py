"""Registry import at city scale: N rows (default 1.5 M) as a UTF-8 CSV with Chinese headers,
imported by `import_registry` into a scratch copy of the demo city with the demo's standard
address library loaded first (so rows without coordinates are geocoded and the others
cross-checked, as in production); prints rows/s, memory and the geocoding outcome.

    set -a; . .local/env; set +a
    .venv/bin/python benchmarks/entity_import.py [N]
"""

from __future__ import annotations

import csv
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench_common import scratch_database
from sqlalchemy import text

from backend.db import make_engine, make_sessionmaker
from backend.domain.demo_entities import generate_entities
from backend.domain.registry_rows import HEADERS
from backend.services.address_import import import_standard_addresses
from backend.services.demo import load_demo
from backend.services.demo_entities import (
    RENAMED,
    PlateLayout,
    library_csv,
    relocate_rows,
    town_points,
)
from backend.services.entity_import import import_registry

# The generator's keys, and the Chinese header a registration system exports for each
# (the first alias in the import's own mapping).
KEYS = [
    "uscc",
    "name",
    "kind",
    "status",
    "legal_representative",
    "phone",
    "registered_address",
    "business_address",
    "industry_code",
    "business_scope",
    "established",
    "credit_class",
    "lon",
    "lat",
]
HEADER = [HEADERS[RENAMED.get(k, k)][0] for k in KEYS]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_500_000
    base = os.environ.get("GRIDPATROL_MIGRATION_URL") or os.environ["DATABASE_URL"]
    with scratch_database(base) as url, tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            load_demo(session, "bench-password-1")
            session.commit()
            towns = session.execute(text("SELECT code, name, geom FROM town ORDER BY code")).all()
        import shapely

        geoms = [shapely.from_wkb(bytes.fromhex(str(t.geom))) for t in towns]
        points = town_points(geoms)
        layout = PlateLayout(geoms, [t.name for t in towns], 20171109)
        index = {t.code: i for i, t in enumerate(towns)}

        def generated():  # type: ignore[no-untyped-def]
            return generate_entities(n, points, [(t.code, t.name) for t in towns])

        t0 = time.perf_counter()
        library = library_csv(generated(), layout, index)
        with sessions() as session:
            lib_report = import_standard_addresses(session, library, crs="cgcs2000")
            session.commit()
        library_s = time.perf_counter() - t0
        path = Path(tmp) / "registry.csv"
        t0 = time.perf_counter()
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            for row in relocate_rows(generated(), layout, index):
                writer.writerow(["" if row[k] is None else row[k] for k in KEYS])
        write_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 2**20
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        with sessions() as session:
            report = import_registry(session, path, filename=path.name)
            session.commit()
        import_s = time.perf_counter() - t0
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with sessions() as session:
            sources = dict(
                session.execute(
                    text("SELECT location_source, count(*) FROM market_entity GROUP BY 1")
                ).all()
            )
            flagged = session.scalar(
                text("SELECT count(*) FROM market_entity WHERE location_disagreement_m > 300")
            )
        engine.dispose()
    print(f"rows                 {n:,}")
    print(
        f"library              {lib_report.created:,} door plates, made and imported in "
        f"{library_s:.1f} s"
    )
    print(f"csv                  {size_mb:.0f} MB, written in {write_s:.1f} s")
    print(
        f"import               {import_s:.1f} s = {n / import_s:,.0f} rows/s "
        f"(read, check, normalise, COPY, dedupe, geocode, upsert, audit events, placement)"
    )
    print(f"created / rejected   {report.created:,} / {report.rejected:,}")
    print(f"placement            {report.placement}")
    print(f"location sources     {sources}; {flagged:,} more than 300 m from their plate")
    print(
        f"peak RSS             {rss_after / 1024:.0f} MiB (before the import "
        f"{rss_before / 1024:.0f} MiB; growth {(rss_after - rss_before) / 1024:.0f} MiB)"
    )
    print(f"command: .venv/bin/python benchmarks/entity_import.py {n}")


if __name__ == "__main__":
    main()
