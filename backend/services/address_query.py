"""Reading the standard address library."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from geo.address import parse_address


def search(
    session: Session,
    *,
    q: str | None = None,
    town: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[dict[str, Any]], int]:
    """Addresses by similarity to `q` (its normalised key, over the trigram index), within a
    town or a bbox; without `q` in id order."""
    where, params = ["true"], {"offset": offset, "limit": limit}
    similarity, order = "NULL::real", "a.id"
    if q:
        key = parse_address(q).key
        where.append("(a.match_key % :key OR a.match_key = :key)")
        similarity, order = "similarity(a.match_key, :key)", "similarity DESC, a.id"
        params["key"] = key
        session.execute(text("SELECT set_config('pg_trgm.similarity_threshold', '0.3', true)"))
    if town:
        where.append("a.town = :town")
        params["town"] = parse_address(town).components["town"] or town
    if bbox:
        where.append("a.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)")
        params.update(dict(zip(("x0", "y0", "x1", "y1"), bbox, strict=True)))
    clause = " AND ".join(where)
    total = session.scalar(text(f"SELECT count(*) FROM standard_address a WHERE {clause}"), params)
    rows = session.execute(
        text(
            f"SELECT a.id, a.source_id, a.full_text, a.normalized, a.town, a.community, a.road, "
            f"a.house_number, a.building, ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat, "
            f"{similarity} AS similarity FROM standard_address a WHERE {clause} "
            f"ORDER BY {order} OFFSET :offset LIMIT :limit"
        ),
        params,
    ).mappings()
    return [dict(r) for r in rows], int(total or 0)
