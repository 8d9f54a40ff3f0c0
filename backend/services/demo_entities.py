"""Load synthetic market entities into the demo city (`gridpatrol demo load --entities N`)."""

from __future__ import annotations

import io
import zlib
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.demo_entities import PointSource, generate_entities
from backend.domain.registry_rows import HEADERS
from backend.services import geocoding, placement
from backend.services.address_import import import_standard_addresses
from backend.services.entity_import import import_rows

# generator key → registry field (the rest keep their names)
RENAMED = {"established": "established_on"}


# Registry rows in real life: some lack coordinates, some coordinates are wrong, and the
# police library lags behind new buildings.
EXTRA_WITHOUT_COORDINATES = 0.05  # besides the generator's 3 %: geocoded from the address
MISPLACED_COORDINATES = 0.005  # registry coordinates 0.5-3 km off: flagged by the cross-check
PLATES_MISSING_FROM_LIBRARY = 0.15  # so a few percent of addresses stay unmatched
PLATE_SPACING_M = 8.0


def load_demo_entities(session: Session, n: int, seed: int = 20171109) -> dict[str, Any]:
    """Add `n` entities once (nothing when the registry already has entities), through the
    same pipeline as a registry import: checked, geocoded, upserted, audited and placed.

    The demo's standard address library comes first: every door plate the entities use lies
    on its road (a straight line through its town, plates `PLATE_SPACING_M` apart), and an
    entity with coordinates stands within a few metres of its plate."""
    if session.scalar(text("SELECT count(*) FROM market_entity")):
        return {"loaded": 0, **placement.placement_totals(session)}
    towns = session.execute(text("SELECT code, name, geom FROM town ORDER BY code")).all()
    if not towns:
        raise ValueError("load the demo city first: entities need towns")
    geoms = [shapely.from_wkb(bytes.fromhex(str(t.geom))) for t in towns]
    points = town_points(geoms)
    layout = PlateLayout(geoms, [t.name for t in towns], seed)
    index = {t.code: i for i, t in enumerate(towns)}

    def generated() -> Any:
        return generate_entities(n, points, [(t.code, t.name) for t in towns], seed=seed)

    library = library_csv(generated(), layout, index)
    import_standard_addresses(
        session, library, filename=f"demo library (seed {seed})", crs="cgcs2000"
    )
    rows = (
        (i, {RENAMED.get(k, k): v for k, v in row.items() if RENAMED.get(k, k) in HEADERS})
        for i, row in enumerate(relocate_rows(generated(), layout, index), start=1)
    )
    report = import_rows(session, rows, source_name=f"demo (seed {seed})")
    if report.rejected:
        raise RuntimeError(
            f"the demo generator made {report.rejected} invalid rows: {report.rejected_rows[:3]}"
        )
    return {"loaded": report.created, **placement.placement_totals(session)}


class PlateLayout:
    """Where a demo door plate is: each (town, road) is a straight line from a seeded point
    inside the town; house number n lies n × PLATE_SPACING_M along it (or back the other way,
    or at the start, whichever stays inside the town)."""

    def __init__(self, town_geoms: list[Any], town_names: list[str], seed: int) -> None:
        self.geoms = town_geoms
        self.names = town_names
        self.seed = seed
        self.roads: dict[tuple[int, str], tuple[float, float, float, float]] = {}
        for g in town_geoms:
            shapely.prepare(g)

    def road(self, town: int, road: str) -> tuple[float, float, float, float]:
        """(x, y, dx, dy): the road's first plate and the step per house number, degrees."""
        key = (town, road)
        if key not in self.roads:
            rng = np.random.default_rng([self.seed, town, zlib.crc32(road.encode())])
            minx, miny, maxx, maxy = self.geoms[town].bounds
            while True:
                x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
                if shapely.contains_xy(self.geoms[town], x, y):
                    break
            angle = rng.uniform(0, np.pi)
            step = PLATE_SPACING_M / 111_320.0
            dx = step * np.cos(angle) / np.cos(np.radians(y))
            self.roads[key] = (float(x), float(y), float(dx), float(step * np.sin(angle)))
        return self.roads[key]

    def plate(self, town: int, road: str, number: int) -> tuple[float, float]:
        x, y, dx, dy = self.road(town, road)
        for sign in (1, -1):
            px, py = x + sign * number * dx, y + sign * number * dy
            if shapely.contains_xy(self.geoms[town], px, py):
                return px, py
        return x + number * 1e-6, y


def _plate_of(row: dict[str, Any], index: dict[str, int]) -> tuple[int, str, int] | None:
    """(town, road, house number) of the address an entity is found at, when it has one."""
    address = row["business_address"] or row["registered_address"]
    _, _, road, house, _ = geocoding.address_fields(address)
    if not road or not house or not house[:-1].isdigit():
        return None
    return index[row["town_code"]], road, int(house[:-1])


def _share(key: str, salt: str) -> float:
    """A stable number in [0, 1) for a key: the same in both passes over the generator."""
    return zlib.crc32(f"{salt}:{key}".encode()) / 2**32


def library_csv(rows: Any, layout: PlateLayout, index: dict[str, int]) -> io.BytesIO:
    """The door plates the entities use (less the share missing from the library), as CSV."""
    seen: set[tuple[int, str, int]] = set()
    out = io.StringIO()
    out.write("地址编码,标准地址,经度,纬度\n")
    for row in rows:
        plate = _plate_of(row, index)
        if plate is None or plate in seen:
            continue
        seen.add(plate)
        town, road, number = plate
        if _share(f"{town}{road}{number}", "library") < PLATES_MISSING_FROM_LIBRARY:
            continue
        x, y = layout.plate(town, road, number)
        text_ = f"广东省东莞市{layout.names[town]}{road}{number}号"
        out.write(f"DEMO{len(seen):08d},{text_},{x:.7f},{y:.7f}\n")
    return io.BytesIO(out.getvalue().encode())


def relocate_rows(rows: Any, layout: PlateLayout, index: dict[str, int]) -> Any:
    """Rows whose coordinates stand at their door plate (a few metres off, as GPS is), some
    without coordinates, a few misplaced by the registry."""
    for row in rows:
        plate = _plate_of(row, index)
        if row["lon"] is not None and plate is not None:
            x, y = layout.plate(*plate)
            u = _share(row["uscc"], "where")
            jitter = (u - 0.5) * 2e-4  # up to ±11 m
            if u < MISPLACED_COORDINATES:
                jitter = 0.005 + u / MISPLACED_COORDINATES * 0.025  # 0.5-3 km
            if u > 1 - EXTRA_WITHOUT_COORDINATES:
                x, y = None, None
            else:
                x, y = x + jitter, y - jitter / 2
                if not shapely.contains_xy(layout.geoms[plate[0]], x, y):
                    x, y = row["lon"], row["lat"]  # the generator's own point, in the town
            row = {**row, "lon": x, "lat": y}
        yield row


def town_points(town_geoms: list[Any]) -> PointSource:
    """Uniform points in the city, with the index of the town holding each."""
    city = shapely.union_all(town_geoms)
    shapely.prepare(city)
    for g in town_geoms:
        shapely.prepare(g)
    minx, miny, maxx, maxy = city.bounds

    def points(k: int, rng: np.random.Generator) -> tuple[Any, Any, Any]:
        xs, ys, idx = [], [], []
        have = 0
        while have < k:
            x = rng.uniform(minx, maxx, 2 * k)
            y = rng.uniform(miny, maxy, 2 * k)
            town = np.full(x.shape, -1)
            for i, g in enumerate(town_geoms):
                town[(town < 0) & shapely.contains_xy(g, x, y)] = i
            keep = town >= 0
            xs.append(x[keep])
            ys.append(y[keep])
            idx.append(town[keep])
            have += int(keep.sum())
        return np.concatenate(xs)[:k], np.concatenate(ys)[:k], np.concatenate(idx)[:k]

    return points
