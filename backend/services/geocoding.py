"""Geocoding: an entity's address → a door plate of the standard address library (标准地址).

Set-based over a table of addresses to match (a temp table with the columns of
`INPUT_COLUMNS`, filled from `address_fields`), in two passes:

1. **components** — same road and house number (exact), town and building consistent (a town
   or building named on both sides must agree). Score 1.0 when the door-plate text is the
   same, 0.95 when the building agrees too, else 0.9.
2. **similarity** — for the rest: `pg_trgm` similarity of the door-plate text to the library's
   key, at least `THRESHOLD`, among the plates with the same house number (宏图路12号 and
   宏图路13号 are 0.4 apart in text but two different doors) in the same town when the address
   names one.

The best candidate wins; when the two best have the same score but lie more than
`AMBIGUOUS_M` apart (the same street name in two towns, and the address names no town), the
address stays unmatched and says why. Below the threshold an address is unmatched: the entity
gets no point (`location_source = 'unmatched'`) and waits for a grid worker's address check.
"""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services.tabular import copy_value
from geo.address import parse_address

THRESHOLD = 0.5  # pg_trgm similarity of the door-plate texts, for pass 2
AMBIGUOUS_M = 100.0  # equal-score candidates farther apart than this: ambiguous
DISAGREEMENT_M = 300.0  # registry coordinates this far from the matched address are flagged

#: what the matcher needs of one address, in this order (see `address_fields`)
INPUT_COLUMNS = ("g_plate", "g_town", "g_road", "g_house", "g_building")
#: what it writes back
RESULT_COLUMNS = ("match_id", "match_score", "match_geom", "match_note")
INPUT_DDL = "g_plate text, g_town text, g_road text, g_house text, g_building text"
RESULT_DDL = (
    "match_id bigint, match_score float8, match_geom geometry(Point, 4490), match_note text"
)


def address_fields(address: str | None) -> tuple[str | None, ...]:
    """The `INPUT_COLUMNS` of an address: its door-plate text (the key without floor and
    room, which the library does not have) and the components checked exactly."""
    if not address or not address.strip():
        return (None,) * len(INPUT_COLUMNS)
    parsed = parse_address(address)
    c = parsed.components
    return (
        door_plate(parsed.key, c) or None,
        c["town"],
        c["road"],
        c["house_number"],
        c["building"],
    )


def door_plate(key: str, components: dict[str, str | None]) -> str:
    """`key` cut after the building, or else after the house number, when it has one."""
    start = key.find(components["house_number"] or "\0")
    if start < 0:
        return key
    end = start + len(components["house_number"] or "")
    building = components["building"]
    if building:
        at = key.find(building, end)
        if at >= 0:
            end = at + len(building)
    return key[:end]


# The best two candidates per address, ranked; shared by both passes.
_RANKED = """
SELECT DISTINCT ON (sid) sid, aid, geom, score,
       lead(score) OVER w AS next_score, lead(geom) OVER w AS next_geom
FROM ({candidates}) cand
WINDOW w AS (PARTITION BY sid ORDER BY score DESC, aid)
ORDER BY sid, score DESC, aid
"""

_APPLY = """
UPDATE {table} s SET
    match_id = CASE WHEN r.ambiguous THEN NULL ELSE r.aid END,
    match_score = CASE WHEN r.ambiguous THEN NULL ELSE r.score END,
    match_geom = CASE WHEN r.ambiguous THEN NULL ELSE r.geom END,
    match_note = CASE WHEN r.ambiguous THEN 'ambiguous: equally good standard addresses '
                      || round(r.apart) || ' m apart' END
FROM (
    SELECT ranked.*, ST_DistanceSphere(geom, next_geom) AS apart,
           COALESCE(next_score = score AND ST_DistanceSphere(geom, next_geom) > :apart, false)
               AS ambiguous
    FROM ({ranked}) ranked
) r
WHERE r.sid = s.{key}
"""

_BY_COMPONENTS = """
SELECT s.{key} AS sid, a.id AS aid, a.geom,
       CASE WHEN a.match_key = s.g_plate THEN 1.0
            WHEN a.building IS NOT NULL THEN 0.95 ELSE 0.9 END AS score
FROM {table} s
JOIN standard_address a ON a.road = s.g_road AND a.house_number = s.g_house
WHERE ({where}) AND s.g_road IS NOT NULL AND s.g_house IS NOT NULL
  AND (s.g_town IS NULL OR a.town IS NULL OR a.town = s.g_town)
  AND (a.building IS NULL OR a.building = s.g_building)
"""

# Pass 2 looks among the plates with the same house number (in the address's town when it
# names one: the (house_number, town) index) and ranks them by pg_trgm similarity. Measured on
# a 1 M-plate library: the GIN `%` search is slow for short Chinese texts (their trigrams are
# shared by a large part of the library), so the GIN index serves the interactive search
# (`GET /addresses?q=`) while matching at import scale starts from the exact component.
_BY_SIMILARITY = """
SELECT s.{key} AS sid, c.aid, c.geom, c.score
FROM {table} s
CROSS JOIN LATERAL (
    SELECT a.id AS aid, a.geom, similarity(a.match_key, s.g_plate) AS score
    FROM standard_address a
    WHERE a.house_number = s.g_house AND {town}
      AND similarity(a.match_key, s.g_plate) >= :threshold
    ORDER BY score DESC, a.id
    LIMIT 2
) c
WHERE ({where}) AND s.g_house IS NOT NULL AND s.match_id IS NULL AND s.match_note IS NULL
  AND {which}
"""
_IN_TOWN = _BY_SIMILARITY.replace("{town}", "a.town = s.g_town").replace(
    "{which}", "s.g_town IS NOT NULL"
)
_ANYWHERE = _BY_SIMILARITY.replace("{town}", "true").replace("{which}", "s.g_town IS NULL")


def match_table(
    session: Session,
    table: str,
    *,
    key: str = "id",
    where: str = "true",
    threshold: float = THRESHOLD,
) -> None:
    """Fill `RESULT_COLUMNS` of the rows of `table` selected by `where` (over alias `s`)."""
    for candidates in (_BY_COMPONENTS, _IN_TOWN, _ANYWHERE):
        ranked = _RANKED.format(candidates=candidates.format(table=table, key=key, where=where))
        session.execute(
            text(_APPLY.format(table=table, key=key, ranked=ranked)),
            {"apart": AMBIGUOUS_M, "threshold": threshold},
        )


def explain(session: Session, address: str, *, threshold: float = THRESHOLD) -> dict[str, Any]:
    """How one address would be matched: its parts, the result and the best candidates."""
    fields = address_fields(address)
    session.execute(text("DROP TABLE IF EXISTS geocode_one"))
    session.execute(
        text(f"CREATE TEMP TABLE geocode_one (id int, {INPUT_DDL}, {RESULT_DDL}) ON COMMIT DROP")
    )
    session.execute(
        text(
            "INSERT INTO geocode_one (id, g_plate, g_town, g_road, g_house, g_building) "
            "VALUES (1, :p, :t, :r, :h, :b)"
        ),
        dict(zip(("p", "t", "r", "h", "b"), fields, strict=True)),
    )
    match_table(session, "geocode_one", threshold=threshold)
    result = session.execute(
        text(
            "SELECT g.match_id, g.match_score, g.match_note, a.full_text, ST_X(a.geom) AS lon, "
            "ST_Y(a.geom) AS lat FROM geocode_one g LEFT JOIN standard_address a "
            "ON a.id = g.match_id"
        )
    ).one()
    # the nearest texts, also well below the threshold, for a person to judge
    session.execute(text("SELECT set_config('pg_trgm.similarity_threshold', '0.3', true)"))
    candidates = session.execute(
        text(
            "SELECT a.id, a.full_text, similarity(a.match_key, :plate) AS similarity, "
            "a.house_number = :house AS same_house_number, ST_X(a.geom) AS lon, "
            "ST_Y(a.geom) AS lat FROM standard_address a "
            "WHERE a.match_key % :plate OR (a.road = :road AND a.house_number = :house) "
            "ORDER BY similarity DESC, a.id LIMIT 5"
        ),
        {"plate": fields[0] or "", "road": fields[2], "house": fields[3]},
    ).mappings()
    return {
        "address": address,
        "door_plate": fields[0],
        "components": dict(
            zip(("town", "road", "house_number", "building"), fields[1:], strict=True)
        ),
        "threshold": threshold,
        "matched": result.match_id is not None,
        "standard_address": None
        if result.match_id is None
        else {
            "id": result.match_id,
            "full_text": result.full_text,
            "lon": result.lon,
            "lat": result.lat,
        },
        "score": result.match_score,
        "note": result.match_note or (None if result.match_id else _why_unmatched(fields)),
        "candidates": [dict(c) for c in candidates],
    }


def _why_unmatched(fields: tuple[str | None, ...]) -> str:
    if fields[0] is None:
        return "no address"
    if fields[3] is None:
        return "the address has no house number (门牌号) to match a door plate"
    return "no standard address with this house number is similar enough"


def geocode_entities(
    session: Session,
    *,
    where: str = "true",
    params: dict[str, Any] | None = None,
    threshold: float = THRESHOLD,
    chunk: int = 20_000,
) -> dict[str, int]:
    """Match the addresses of the entities `where` (over alias `e`) selects again, e.g. after
    the library changed or a dispatcher corrected an address; audited and re-placed.

    The answer replaces the location only when it came from an address match (or there was
    none): coordinates from the registry, a worker or a dispatcher stay, and only their
    distance to the matched address is refreshed."""
    from backend.services import audit, placement  # placement and audit sit above geocoding

    session.execute(text("DROP TABLE IF EXISTS entity_geo"))
    session.execute(
        text(
            f"CREATE TEMP TABLE entity_geo (id bigint PRIMARY KEY, {INPUT_DDL}, {RESULT_DDL}) "
            "ON COMMIT DROP"
        )
    )
    cursor = session.connection().connection.dbapi_connection.cursor()
    rows = session.execute(
        text(
            "SELECT e.id, COALESCE(e.business_address, e.registered_address) AS address "
            f"FROM market_entity e WHERE {where} ORDER BY e.id"
        ).execution_options(yield_per=chunk),
        params or {},
    )
    for part in rows.partitions():
        buf = io.StringIO()
        for entity_id, address in part:
            values = (entity_id, *address_fields(address))
            buf.write("\t".join(copy_value(v) for v in values) + "\n")
        buf.seek(0)
        cursor.copy_expert(f"COPY entity_geo (id, {', '.join(INPUT_COLUMNS)}) FROM STDIN", buf)
    session.execute(text("ANALYZE entity_geo"))
    match_table(session, "entity_geo", threshold=threshold)
    take = "(m.location_source IS NULL OR m.location_source IN ('unmatched', 'address_match'))"
    session.execute(text("DROP TABLE IF EXISTS entity_regeocoded"))
    session.execute(
        text(
            "CREATE TEMP TABLE entity_regeocoded ON COMMIT DROP AS "
            "SELECT m.id, m.location_source AS old_source, m.address_match_id AS old_match "
            "FROM market_entity m WHERE false"
        )
    )
    session.execute(
        text(
            f"WITH changed AS (UPDATE market_entity m SET "
            f"geom = CASE WHEN {take} THEN g.match_geom ELSE m.geom END, "
            f"location_source = CASE WHEN {take} THEN CASE WHEN g.match_id IS NULL "
            f"THEN 'unmatched' ELSE 'address_match' END ELSE m.location_source END, "
            f"location_accuracy_m = CASE WHEN {take} THEN NULL ELSE m.location_accuracy_m END, "
            f"address_match_id = g.match_id, address_match_score = g.match_score, "
            f"location_disagreement_m = CASE WHEN {take} OR m.geom IS NULL THEN NULL "
            f"ELSE ST_DistanceSphere(m.geom, g.match_geom) END, "
            f"version = m.version + 1, updated_at = now() "
            f"FROM entity_geo g, market_entity old "
            f"WHERE m.id = g.id AND old.id = m.id AND ("
            f"m.address_match_id IS DISTINCT FROM g.match_id "
            f"OR m.address_match_score IS DISTINCT FROM g.match_score "
            f"OR ({take} AND m.geom IS DISTINCT FROM g.match_geom) "
            f"OR (NOT {take} AND m.geom IS NOT NULL AND g.match_id IS NOT NULL "
            f"AND m.location_disagreement_m IS NULL)) "
            f"RETURNING m.id, old.location_source AS old_source, old.address_match_id "
            f"AS old_match) INSERT INTO entity_regeocoded SELECT * FROM changed"
        )
    )
    audit.record_from_query(
        session,
        "geocode",
        "entity",
        "SELECT r.id AS object_id, jsonb_build_object("
        "'location_source', jsonb_build_object('from', r.old_source, 'to', m.location_source), "
        "'address_match_id', jsonb_build_object('from', r.old_match, 'to', m.address_match_id)"
        ") AS changes FROM entity_regeocoded r JOIN market_entity m ON m.id = r.id",
    )
    session.execute(
        text(
            "DELETE FROM entity_placement p USING entity_regeocoded r, market_entity e "
            "WHERE p.entity_id = r.id AND e.id = r.id AND e.geom IS NULL"
        )
    )
    moves = placement.place_matching(session, "{e}.id IN (SELECT id FROM entity_regeocoded)")
    counts = session.execute(
        text(
            "SELECT (SELECT count(*) FROM entity_geo) AS checked, "
            "(SELECT count(*) FROM entity_geo WHERE match_id IS NOT NULL) AS matched, "
            "(SELECT count(*) FROM entity_regeocoded) AS changed"
        )
    ).one()
    return {**counts._asdict(), "moved": sum(m["entities"] for m in moves)}
