"""Entities into cells: the full job, single entities, and the moves a redrawn boundary causes."""

from __future__ import annotations

import shapely
from shapely.geometry import box, mapping
from sqlalchemy import text

from backend.services import audit, placement
from tests.grid_fixtures import cells_fc, load_small_grid, upload

INSERT_ENTITY = (
    "INSERT INTO market_entity (uscc, name, registered_address, geom, location_source) "
    "VALUES (:u, :n, :a, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), "
    "CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL ELSE 'manual' END) RETURNING id"
)


def add_entities(session, points: list[tuple[float, float] | None]) -> list[int]:
    ids = []
    for i, point in enumerate(points):
        lon, lat = point if point else (None, None)
        params = {
            "u": f"91441900{i:09d}X",
            "n": f"测试{i}",
            "a": "东莞市测试路1号",
            "lon": lon,
            "lat": lat,
        }
        ids.append(session.scalar(text(INSERT_ENTITY), params))
        audit.record(session, "create", "entity", ids[-1], changes={"test": True})
    return ids


def cells_of(session, ids):
    rows = session.execute(
        text(
            "SELECT p.entity_id, c.code FROM entity_placement p "
            "LEFT JOIN grid_cell c ON c.id = p.cell_id WHERE p.entity_id = ANY(:ids)"
        ),
        {"ids": ids},
    ).all()
    found = dict(rows)
    return [found.get(i, "unplaced") for i in ids]


def test_every_entity_is_in_exactly_one_cell_or_explicitly_unplaced(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    ids = add_entities(
        session,
        [
            (113.705, 23.005),
            (113.715, 23.005),  # inside; on an edge
            (113.73, 23.03),  # the corner of four cells
            (114.5, 23.5),  # outside the grid
            None,
        ],
    )  # no location
    totals = placement.place_all(session)
    assert cells_of(session, ids) == [
        "441900003001001",
        "441900003001001",
        "441900003001002",
        None,
        "unplaced",
    ]
    assert totals["placed"] == 3 and totals["outside_grid"] == 1 and totals["no_location"] == 1
    again = placement.place_all(session)
    assert again["written"] == 0  # nothing changed, nothing written


def test_a_new_location_re_places_one_entity(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    (eid,) = add_entities(session, [(113.705, 23.005)])
    placement.place_all(session)
    session.execute(
        text(
            "UPDATE market_entity SET geom = ST_SetSRID(ST_MakePoint(113.81, "
            "23.05), 4490) WHERE id = :i"
        ),
        {"i": eid},
    )
    moves = placement.place_entities(session, [eid])
    assert moves == [{"from": "441900003001001", "to": "441900004002004", "entities": 1}]
    session.execute(
        text("UPDATE market_entity SET geom = NULL, location_source = NULL WHERE id = :i"),
        {"i": eid},
    )
    placement.place_entities(session, [eid])
    assert cells_of(session, [eid]) == ["unplaced"]


def test_redrawing_a_boundary_moves_exactly_the_affected_entities(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    # a row of entities across cells 003001001 | 003001002 (border at x = 113.715)
    xs = [113.7100, 113.7145, 113.7152, 113.7158, 113.7170, 113.7250]
    ids = add_entities(session, [(x, 23.005) for x in xs] + [(113.80, 23.05)])
    placement.place_all(session)
    before = cells_of(session, ids)
    assert before[:6] == ["441900003001001"] * 2 + ["441900003001002"] * 4
    cells = cells_fc()
    for f in cells["features"]:  # move the border 0.001° east
        code = f["properties"]["code"]
        if code in ("441900003001001", "441900003001002"):
            x0, y0, x1, y1 = shapely.geometry.shape(f["geometry"]).bounds
            if code.endswith("001"):
                x1 += 0.001
            else:
                x0 += 0.001
            f["geometry"] = mapping(box(x0, y0, x1, y1))
    resp = upload(client, admin_headers, cells, "cell")
    assert resp.status_code == 201, resp.get_json()
    moved = resp.get_json()["report"]["entities_moved"]
    assert moved == {
        "total": 2,
        "moves": [{"from": "441900003001002", "to": "441900003001001", "entities": 2}],
    }
    after = cells_of(session, ids)
    assert after[:6] == ["441900003001001"] * 4 + ["441900003001002"] * 2
    assert after[6] == before[6]


def test_a_bulk_load_sets_the_indexes_aside_and_rebuilds_them(
    client, admin_headers, session, monkeypatch
):
    load_small_grid(client, admin_headers)
    monkeypatch.setattr(placement, "REBUILD_INDEX_ABOVE", 1)
    ids = add_entities(session, [(113.705, 23.005), (113.775, 23.045), (113.81, 23.01)])
    totals = placement.place_all(session)
    assert totals["placed"] == 3
    assert cells_of(session, ids) == ["441900003001001", "441900004001003", "441900004002002"]
    index = session.scalar(
        text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_entity_placement_cell'")
    )
    assert index is not None and "(cell_id)" in index
    primary_key = session.scalar(
        text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'pk_entity_placement' AND contype = 'p'"
        )
    )
    assert primary_key == "PRIMARY KEY (entity_id)"
    # a second bulk job over placed entities keeps the indexes (nothing new to insert)
    assert placement.place_all(session)["written"] == 0


def test_a_bulk_load_that_meets_a_concurrent_placement_falls_back_to_the_upsert(
    client, admin_headers, session, monkeypatch
):
    """Rows another transaction placed after the join read the table make the bare INSERT's
    rebuilt primary key fail: the job rolls back to before the INSERT and upserts instead."""
    load_small_grid(client, admin_headers)
    monkeypatch.setattr(placement, "REBUILD_INDEX_ABOVE", 1)
    ids = add_entities(session, [(113.705, 23.005), (113.775, 23.045), (113.81, 23.01)])
    real = placement._insert_new
    fell_back = []

    def placed_meanwhile(s, new, placed):
        # as if committed by another transaction between the join and the INSERT
        s.execute(
            text(
                "INSERT INTO entity_placement (entity_id, cell_id, town_code) SELECT :id, id, "
                "'441900004' FROM grid_cell WHERE code = '441900004001003'"
            ),
            {"id": ids[0]},
        )
        written, alone = real(s, new, placed)
        fell_back.append(not alone)
        return written, alone

    monkeypatch.setattr(placement, "_insert_new", placed_meanwhile)
    totals = placement.place_all(session)
    assert fell_back == [True]
    assert totals["placed"] == 3
    assert cells_of(session, ids) == ["441900003001001", "441900004001003", "441900004002002"]
    assert (
        session.scalar(
            text("SELECT count(*) FROM pg_constraint WHERE conname = 'pk_entity_placement'")
        )
        == 1
    )
