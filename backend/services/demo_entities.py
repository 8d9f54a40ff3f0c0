"""Load synthetic market entities into the demo city (`gridpatrol demo load --entities N`),
streamed with COPY in chunks, then placed into cells set-based."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.demo_entities import PointSource, generate_entities
from backend.services import audit, placement

COPY_CHUNK = 50_000
COLUMNS = (
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
    "established_on",
    "credit_class",
    "geom",
    "location_source",
)


def load_demo_entities(session: Session, n: int, seed: int = 20171109) -> dict[str, Any]:
    """Add `n` entities once (nothing when the registry already has entities)."""
    existing = session.scalar(text("SELECT count(*) FROM market_entity"))
    if existing:
        return {"loaded": 0, **placement.placement_totals(session)}
    towns = session.execute(text("SELECT code, name, geom FROM town ORDER BY code")).all()
    if not towns:
        raise ValueError("load the demo city first: entities need towns")
    points = _town_points([shapely.from_wkb(bytes.fromhex(str(t.geom))) for t in towns])
    rows = generate_entities(n, points, [(t.code, t.name) for t in towns], seed=seed)
    raw = session.connection().connection.dbapi_connection
    cursor = raw.cursor()
    for chunk in _chunks(rows, COPY_CHUNK):
        cursor.copy_expert(f"COPY market_entity ({', '.join(COLUMNS)}) FROM STDIN", _tsv(chunk))
    audit.record_from_query(
        session,
        "create",
        "entity",
        "SELECT id AS object_id, jsonb_build_object('source', jsonb_build_object('from', NULL, "
        "'to', 'demo')) AS changes FROM market_entity",
    )
    audit.record(
        session,
        "demo_load",
        "market_entity_registry",
        "demo",
        changes={"entities": {"from": 0, "to": n}, "seed": {"from": None, "to": seed}},
    )
    totals = placement.place_all(session)
    return {"loaded": n, **totals}


def _town_points(town_geoms: list[Any]) -> PointSource:
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


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _tsv(rows: list[dict[str, Any]]) -> io.StringIO:
    buf = io.StringIO()
    for r in rows:
        located = r["lon"] is not None
        values = [
            r["uscc"],
            r["name"],
            r["kind"],
            r["status"],
            r["legal_representative"],
            r["phone"],
            r["registered_address"],
            r["business_address"],
            r["industry_code"],
            r["business_scope"],
            r["established"],
            r["credit_class"],
            f"SRID=4490;POINT({r['lon']:.7f} {r['lat']:.7f})" if located else None,
            "registry_coordinates" if located else None,
        ]
        buf.write("\t".join(_copy_value(v) for v in values) + "\n")
    buf.seek(0)
    return buf


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")
