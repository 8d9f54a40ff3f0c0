"""Which grid cell each market entity lies in, kept in `entity_placement`.

One set-based statement per job: the spatial join picks, for every entity point, the cell whose
code sorts first among those containing it (the same boundary rule as `locate`), and only rows
whose cell actually changes are written. Entities without a point have no placement (unplaced);
a point outside every cell is placed with cell_code NULL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# The entities to (re)place are chosen by a WHERE fragment written over alias {e}. The hit
# subquery has the shape of the bare spatial join (the planner loops over the cells and probes
# the entities' GiST index); only entities whose cell differs from their placement are written.
_CHANGED = """
SELECT e.id, old.cell_code AS old_code, h.code AS new_code, h.town_code
FROM market_entity e
LEFT JOIN (
    SELECT DISTINCT ON (e2.id) e2.id, c.code, c.town_code
    FROM market_entity e2
    JOIN grid_cell c ON c.geom && e2.geom AND ST_Intersects(c.geom, e2.geom)
    WHERE e2.geom IS NOT NULL AND ({where_e2})
    ORDER BY e2.id, c.code
) h ON h.id = e.id
LEFT JOIN entity_placement old ON old.entity_id = e.id
WHERE e.geom IS NOT NULL AND ({where_e})
  AND (old.entity_id IS NULL OR old.cell_code IS DISTINCT FROM h.code)
"""

_UPSERT = """
INSERT INTO entity_placement AS p (entity_id, cell_code, town_code, placed_at)
SELECT id, new_code, town_code, now() FROM ({changed}) m
ON CONFLICT (entity_id) DO UPDATE
   SET cell_code = EXCLUDED.cell_code, town_code = EXCLUDED.town_code, placed_at = now()
"""

_MOVES = """
WITH moved AS MATERIALIZED ({changed}),
written AS ({upsert} RETURNING p.entity_id)
SELECT m.old_code, m.new_code, count(*) AS entities
FROM moved m JOIN written w ON w.entity_id = m.id
GROUP BY m.old_code, m.new_code ORDER BY entities DESC, m.old_code, m.new_code
"""


# For a few entities (one new location, a redrawn boundary's surroundings): a probe of the
# cells' GiST index per entity beats the bulk join's plan by orders of magnitude.
_CHANGED_FEW = """
SELECT e.id, old.cell_code AS old_code, h.code AS new_code, h.town_code
FROM market_entity e
LEFT JOIN LATERAL (
    SELECT c.code, c.town_code FROM grid_cell c
    WHERE c.geom && e.geom AND ST_Intersects(c.geom, e.geom)
    ORDER BY c.code LIMIT 1
) h ON true
LEFT JOIN entity_placement old ON old.entity_id = e.id
WHERE e.geom IS NOT NULL AND ({where_e})
  AND (old.entity_id IS NULL OR old.cell_code IS DISTINCT FROM h.code)
"""


def _changed(where: str, *, bulk: bool) -> str:
    if not bulk:
        return _CHANGED_FEW.format(where_e=where.format(e="e"))
    return _CHANGED.format(where_e=where.format(e="e"), where_e2=where.format(e="e2"))


def place_all(session: Session) -> dict[str, int]:
    """(Re)place every entity; returns rows written and the resulting totals."""
    written = session.execute(text(_UPSERT.format(changed=_changed("true", bulk=True)))).rowcount
    session.execute(
        text(
            "DELETE FROM entity_placement p WHERE NOT EXISTS (SELECT 1 FROM market_entity e "
            "WHERE e.id = p.entity_id AND e.geom IS NOT NULL)"
        )
    )
    return {"written": int(written or 0), **placement_totals(session)}


def place_entities(session: Session, entity_ids: list[int]) -> list[dict[str, Any]]:
    """Re-place some entities at once (a new location, a registration change): the moves."""
    session.execute(
        text(
            "DELETE FROM entity_placement p USING market_entity e WHERE e.id = p.entity_id "
            "AND e.id = ANY(:ids) AND e.geom IS NULL"
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
    changed = _changed(where, bulk=False)
    sql = _MOVES.format(changed=changed, upsert=_UPSERT.format(changed="SELECT * FROM moved"))
    rows = session.execute(text(sql), params).mappings().all()
    return [{"from": r["old_code"], "to": r["new_code"], "entities": r["entities"]} for r in rows]


def placement_totals(session: Session) -> dict[str, int]:
    row = session.execute(
        text(
            "SELECT (SELECT count(*) FROM market_entity) AS entities, "
            "(SELECT count(*) FROM entity_placement WHERE cell_code IS NOT NULL) AS placed, "
            "(SELECT count(*) FROM entity_placement WHERE cell_code IS NULL) AS outside_grid, "
            "(SELECT count(*) FROM market_entity WHERE geom IS NULL) AS no_location"
        )
    ).one()
    return dict(row._mapping)
