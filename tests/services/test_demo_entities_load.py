"""`demo load --entities`: realistic entities on the demo grid, each placed or unplaced."""

from __future__ import annotations

from sqlalchemy import text

from backend.domain.uscc import is_valid
from backend.services.demo_entities import load_demo_entities
from tests.grid_fixtures import load_small_grid


def test_demo_entities_are_valid_and_each_in_one_cell_or_unplaced(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    report = load_demo_entities(session, 3_000, seed=7)
    assert report["loaded"] == 3_000 and report["entities"] == 3_000
    codes = session.scalars(text("SELECT uscc FROM market_entity")).all()
    assert len(set(codes)) == 3_000 and all(is_valid(c) for c in codes)
    placed, unplaced, outside, doubled = session.execute(
        text(
            "SELECT count(*) FILTER (WHERE p.cell_id IS NOT NULL), "
            "count(*) FILTER (WHERE p.entity_id IS NULL), "
            "count(*) FILTER (WHERE p.entity_id IS NOT NULL AND p.cell_id IS NULL), "
            "(SELECT count(*) FROM (SELECT entity_id FROM entity_placement GROUP BY entity_id "
            " HAVING count(*) > 1) d) "
            "FROM market_entity e LEFT JOIN entity_placement p ON p.entity_id = e.id"
        )
    ).one()
    assert placed + unplaced + outside == 3_000 and doubled == 0
    assert outside == 0  # the points are drawn inside the towns
    # a few percent of addresses stay unmatched (vague, or the plate is not in the library)
    sources = dict(
        session.execute(
            text("SELECT location_source, count(*) FROM market_entity GROUP BY 1")
        ).all()
    )
    assert unplaced == sources["unmatched"]
    assert 0.01 * 3_000 < sources["unmatched"] < 0.05 * 3_000, sources
    assert 0.04 * 3_000 < sources["address_match"] < 0.12 * 3_000, sources
    # registry coordinates stand at their door plate, a few are flagged as far off
    near, far = session.execute(
        text(
            "SELECT count(*) FILTER (WHERE location_disagreement_m < 20), "
            "count(*) FILTER (WHERE location_disagreement_m > 300) FROM market_entity "
            "WHERE location_source = 'registry_coordinates'"
        )
    ).one()
    assert near > 0.7 * 3_000 and 0 < far < 0.02 * 3_000, (near, far)
    # the cell each placed entity got really contains it, by the boundary rule
    wrong = session.scalar(
        text(
            "SELECT count(*) FROM entity_placement p JOIN market_entity e ON e.id = p.entity_id "
            "WHERE p.cell_id <> (SELECT c.id FROM grid_cell c WHERE ST_Intersects(c.geom, "
            "e.geom) ORDER BY c.code LIMIT 1)"
        )
    )
    assert wrong == 0
    # a second load adds nothing
    assert load_demo_entities(session, 3_000, seed=7)["loaded"] == 0
