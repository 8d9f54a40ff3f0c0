"""Which grid cell each market entity lies in, kept in `entity_placement`.

The spatial join picks, for every entity point, the cell whose code sorts first among those
containing it (the same boundary rule as `locate`), and only rows whose cell actually changes are
written. Entities without a point have no placement (unplaced); a point outside every cell is
placed with cell_id NULL. Placements name a cell by `grid_cell.id` (migration 0014); the moves
reported name cells by code.

`place_all` joins every entity in one parallel query into a temporary table and then writes the
differences in entity id order (measured in benchmarks/README.md, "assign"); the other functions
re-place a few entities with one statement that probes the cells' index per entity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

# Settings for the bulk join, local to the job's transaction (benchmarks/README.md, "assign").
BULK_SETTINGS: dict[str, str] = {
    "work_mem": "256MB",  # the DISTINCT ON sort of 1.5 M rows stays in memory
    "jit": "off",  # compiling the plan costs more than it saves
    "min_parallel_table_scan_size": "0",  # grid_cell is small, yet each cell is much work
    "maintenance_work_mem": "256MB",  # rebuilding the cell index sorts in memory
}

# The bulk join: the planner loops over the cells (split among parallel workers) and probes the
# entities' GiST index; DISTINCT ON keeps the smallest code for a point on shared boundaries.
JOIN_SQL = """
SELECT DISTINCT ON (e.id) e.id, c.id AS cell_id, c.town_code
FROM market_entity e
JOIN grid_cell c ON c.geom && e.geom AND ST_Intersects(c.geom, e.geom)
WHERE e.geom IS NOT NULL
ORDER BY e.id, c.code
"""

# Entities to (re)place as (id, new_cell, town_code) rows → upserted in that order.
_UPSERT = """
INSERT INTO entity_placement AS p (entity_id, cell_id, town_code, placed_at)
SELECT id, new_cell, town_code, now() FROM ({changed}) m
ON CONFLICT (entity_id) DO UPDATE
   SET cell_id = EXCLUDED.cell_id, town_code = EXCLUDED.town_code, placed_at = now()
"""

# The bulk job's differences, in one parallel query: every point's cell from the join against the
# current placements (a full join on the entity id, in the leader, after the workers' join).
# Rows: not yet placed → insert; placed in another cell → update; no cell → the point is now
# outside every cell, or gone (deleted below).
_DIFF = f"""
CREATE TEMP TABLE placement_diff AS
SELECT coalesce(n.id, old.entity_id) AS id, n.cell_id, n.town_code,
       old.entity_id IS NOT NULL AS placed
FROM ({JOIN_SQL}) n
FULL JOIN entity_placement old ON old.entity_id = n.id
WHERE n.id IS NULL OR old.entity_id IS NULL OR old.cell_id IS DISTINCT FROM n.cell_id
"""

# The first placement (the table is empty): the join alone, every row new.
_FIRST = f"""
CREATE TEMP TABLE placement_diff AS
SELECT j.id, j.cell_id, j.town_code, false AS placed FROM ({JOIN_SQL}) j
"""

# Rows in entity id order, so the primary key grows at its right edge.
_INSERT_NEW = """
INSERT INTO entity_placement (entity_id, cell_id, town_code, placed_at)
SELECT id, cell_id, town_code, now() FROM placement_diff WHERE NOT placed ORDER BY id
"""

_INSERT_NEW_BARE = _INSERT_NEW.replace(" ORDER BY id", "")

_UPSERT_NEW = _UPSERT.format(
    changed="SELECT id, cell_id AS new_cell, town_code FROM placement_diff WHERE NOT placed "
    "ORDER BY id"
)

_UPDATE_MOVED = """
UPDATE entity_placement p SET cell_id = d.cell_id, town_code = d.town_code, placed_at = now()
FROM placement_diff d
WHERE p.entity_id = d.id AND d.placed AND d.cell_id IS NOT NULL
"""

_UPDATE_OUTSIDE = """
UPDATE entity_placement p SET cell_id = NULL, town_code = NULL, placed_at = now()
FROM placement_diff d JOIN market_entity e ON e.id = d.id
WHERE p.entity_id = d.id AND d.cell_id IS NULL AND e.geom IS NOT NULL AND p.cell_id IS NOT NULL
"""

_DELETE_UNLOCATED = """
DELETE FROM entity_placement p USING placement_diff d
WHERE p.entity_id = d.id AND d.cell_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM market_entity e WHERE e.id = d.id AND e.geom IS NOT NULL)
"""

# Located entities with no placement yet whose point the join found in no cell.
_UNPLACED = "NOT EXISTS (SELECT 1 FROM entity_placement p0 WHERE p0.entity_id = {e}.id)"

# For a few entities (one new location, a redrawn boundary's surroundings): a probe of the
# cells' GiST index per entity beats the bulk join's plan by orders of magnitude.
_CHANGED_FEW = """
SELECT e.id, old.cell_id AS old_cell, h.id AS new_cell, h.town_code
FROM market_entity e
LEFT JOIN LATERAL (
    SELECT c.id, c.town_code FROM grid_cell c
    WHERE c.geom && e.geom AND ST_Intersects(c.geom, e.geom)
    ORDER BY c.code LIMIT 1
) h ON true
LEFT JOIN entity_placement old ON old.entity_id = e.id
WHERE e.geom IS NOT NULL AND ({where_e})
  AND (old.entity_id IS NULL OR old.cell_id IS DISTINCT FROM h.id)
"""

_MOVES = """
WITH moved AS MATERIALIZED ({changed}),
written AS ({upsert} RETURNING p.entity_id)
SELECT oc.code AS old_code, nc.code AS new_code, count(*) AS entities
FROM moved m JOIN written w ON w.entity_id = m.id
LEFT JOIN grid_cell oc ON oc.id = m.old_cell
LEFT JOIN grid_cell nc ON nc.id = m.new_cell
GROUP BY oc.code, nc.code ORDER BY entities DESC, oc.code, nc.code
"""


@contextmanager
def bulk_settings(session: Session) -> Iterator[None]:
    """BULK_SETTINGS for the statements inside the block, then the caller's values again."""
    before = {
        name: session.scalar(text("SELECT current_setting(:name)"), {"name": name})
        for name in BULK_SETTINGS
    }
    _set(session, BULK_SETTINGS)
    yield  # on an error the transaction is rolled back, and the local settings with it
    _set(session, before)


def _set(session: Session, settings: dict[str, Any]) -> None:
    for name, value in settings.items():
        session.execute(
            text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value}
        )


def place_all(session: Session) -> dict[str, int]:
    """(Re)place every entity; returns rows written and the resulting totals."""
    with bulk_settings(session):  # the counts' scan too: parallel, no JIT compilation
        entities, located = _entity_counts(session)
        session.execute(text("DROP TABLE IF EXISTS pg_temp.placement_diff"))
        counts: tuple[int, int] | None = None
        if session.scalar(text("SELECT EXISTS (SELECT 1 FROM entity_placement)")):
            differences = session.execute(text(_DIFF)).rowcount
            written = _write_diff(session, differences)
        else:  # the first placement: nothing to compare with, every row is new and in a cell
            new = session.execute(text(_FIRST)).rowcount
            written, alone = _insert_new(session, new, placed=0)
            if alone:
                counts = (written, written)
        session.execute(text("DROP TABLE placement_diff"))
        rows, placed = counts or _placement_counts(session)
        if rows < located:  # points outside every cell, not placed yet
            changed = _CHANGED_FEW.format(where_e=_UNPLACED.format(e="e"))
            written += session.execute(text(_UPSERT.format(changed=changed))).rowcount
            rows, placed = _placement_counts(session)
    return {
        "written": written,
        "entities": entities,
        "placed": placed,
        "outside_grid": rows - placed,
        "no_location": entities - located,
    }


# Inserting more new rows than this (and more than are placed already) sets the table's primary
# key and cell index aside and builds them afterwards: measured for 1.5 million rows,
# 3.6 s (INSERT maintaining both) → 3.4 s (cell index rebuilt) → 2.7 s (both rebuilt). Their
# absence holds an exclusive lock on entity_placement until the job commits, so it is for first
# loads and city-wide rebuilds, not for the everyday few.
REBUILD_INDEX_ABOVE = 200_000


def _write_diff(session: Session, differences: int) -> int:
    """Write placement_diff's rows; returns those inserted or updated."""
    new, placed = session.execute(
        text(
            "SELECT count(*) FILTER (WHERE NOT placed), "
            "(SELECT count(*) FROM entity_placement) FROM placement_diff"
        )
    ).one()
    written, _ = _insert_new(session, new, placed)
    if differences > written:  # moves, and points now without a cell
        written += session.execute(text(_UPDATE_MOVED)).rowcount
        written += session.execute(text(_UPDATE_OUTSIDE)).rowcount
        session.execute(text(_DELETE_UNLOCATED))
    return written


def _insert_new(session: Session, new: int, placed: int) -> tuple[int, bool]:
    """Insert placement_diff's new rows: (rows written, whether nobody else placed any of the
    same entities meanwhile). A plain INSERT costs much less than an upsert, which is the
    fallback when another transaction did (the INSERT, or building the primary key after it,
    then fails)."""
    try:
        with session.begin_nested():
            if new > REBUILD_INDEX_ABOVE and new > placed:
                # no index to keep in order: the rows go in as the join wrote them (id order)
                session.execute(text("SELECT gp_placement_indexes(false)"))
                written = int(session.execute(text(_INSERT_NEW_BARE)).rowcount)
                session.execute(text("SELECT gp_placement_indexes(true)"))
            else:
                written = int(session.execute(text(_INSERT_NEW)).rowcount)
        return written, True
    except IntegrityError:
        return int(session.execute(text(_UPSERT_NEW)).rowcount), False


def place_entities(session: Session, entity_ids: list[int]) -> list[dict[str, Any]]:
    """Re-place some entities at once (a new location, a registration change): the moves."""
    # driven by the ids: a `geom IS NULL` condition would let the planner search the whole
    # GiST index for null points (tens of milliseconds at 1.5 M entities)
    session.execute(
        text(
            "DELETE FROM entity_placement p WHERE p.entity_id = ANY(:ids) AND NOT EXISTS ("
            "SELECT 1 FROM market_entity e WHERE e.id = p.entity_id AND e.geom IS NOT NULL)"
        ),
        {"ids": entity_ids},
    )
    return _moves(session, "{e}.id = ANY(:ids)", {"ids": entity_ids})


def replace_in_area(
    session: Session, area_wkb_sql: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Re-place the entities inside an area (e.g. old ∪ new boundaries of redrawn cells), and
    report how many moved between which cells. `area_wkb_sql` is an SQL expression for the
    area geometry."""
    where = "ST_Intersects({e}.geom, (" + area_wkb_sql.replace("{", "{{").replace("}", "}}") + "))"
    return _moves(session, where, params)


def place_matching(
    session: Session, where: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Re-place the entities a WHERE fragment over `{e}` selects; returns the moves."""
    return _moves(session, where, params or {})


def _moves(session: Session, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    changed = _CHANGED_FEW.format(where_e=where.format(e="e"))
    sql = _MOVES.format(changed=changed, upsert=_UPSERT.format(changed="SELECT * FROM moved"))
    rows = session.execute(text(sql), params).mappings().all()
    return [{"from": r["old_code"], "to": r["new_code"], "entities": r["entities"]} for r in rows]


def placement_totals(session: Session) -> dict[str, int]:
    entities, located = _entity_counts(session)
    rows, placed = _placement_counts(session)
    return {
        "entities": entities,
        "placed": placed,
        "outside_grid": rows - placed,
        "no_location": entities - located,
    }


def _entity_counts(session: Session) -> tuple[int, int]:
    """(entities, entities with a point): one scan."""
    row = session.execute(text("SELECT count(*), count(geom) FROM market_entity")).one()
    return int(row[0]), int(row[1])


def _placement_counts(session: Session) -> tuple[int, int]:
    """(placement rows, rows in a cell): one scan."""
    row = session.execute(text("SELECT count(*), count(cell_id) FROM entity_placement")).one()
    return int(row[0]), int(row[1])
