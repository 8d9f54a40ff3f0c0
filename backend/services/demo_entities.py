"""Load synthetic market entities into the demo city (`gridpatrol demo load --entities N`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.demo_entities import PointSource, generate_entities
from backend.domain.registry_rows import HEADERS
from backend.services import placement
from backend.services.entity_import import import_rows

# generator key → registry field (the rest keep their names)
RENAMED = {"established": "established_on"}


def load_demo_entities(session: Session, n: int, seed: int = 20171109) -> dict[str, Any]:
    """Add `n` entities once (nothing when the registry already has entities), through the
    same pipeline as a registry import: checked, upserted, audited and placed."""
    if session.scalar(text("SELECT count(*) FROM market_entity")):
        return {"loaded": 0, **placement.placement_totals(session)}
    towns = session.execute(text("SELECT code, name, geom FROM town ORDER BY code")).all()
    if not towns:
        raise ValueError("load the demo city first: entities need towns")
    points = town_points([shapely.from_wkb(bytes.fromhex(str(t.geom))) for t in towns])
    generated = generate_entities(n, points, [(t.code, t.name) for t in towns], seed=seed)
    rows = (
        (i, {RENAMED.get(k, k): v for k, v in row.items() if RENAMED.get(k, k) in HEADERS})
        for i, row in enumerate(generated, start=1)
    )
    report = import_rows(session, rows, source_name=f"demo (seed {seed})")
    if report.rejected:
        raise RuntimeError(
            f"the demo generator made {report.rejected} invalid rows: {report.rejected_rows[:3]}"
        )
    return {"loaded": report.created, **placement.placement_totals(session)}


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
