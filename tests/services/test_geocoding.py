"""Standard address library import and geocoding: exact components, similarity with an exact
house number, ambiguity, unmatched addresses, cross-checks of registry coordinates."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import text

from backend.services import geocoding
from backend.services.address_import import import_standard_addresses
from backend.services.entity_import import import_registry
from backend.services.errors import InvalidInput
from tests.grid_fixtures import load_small_grid
from tests.services.test_entity_import import code

LIBRARY = [
    ("DZ001", "广东省东莞市东城街道东城中路1号", 113.71, 23.01),
    ("DZ002", "东莞市东城街道东城中路3号5栋", 113.712, 23.012),
    ("DZ003", "东莞市南城街道鸿福路106号", 113.80, 23.04),
    ("DZ004", "南城街道宏图路12号", 113.79, 23.05),
    ("DZ005", "东城街道宏图路12号", 113.72, 23.05),
    ("DZ006", "东莞市东城街道莞樟路十八号", 113.73, 23.02),
    ("DZ007", "东城街道S358省道123号", 113.74, 23.03),
]


def library_csv(rows: list[tuple], encoding: str = "utf-8") -> io.BytesIO:
    lines = ["地址编码,标准地址,经度,纬度"] + [",".join(str(v) for v in r) for r in rows]
    return io.BytesIO(("\n".join(lines) + "\n").encode(encoding))


@pytest.fixture()
def library(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    report = import_standard_addresses(
        session, library_csv(LIBRARY), filename="library.csv", crs="cgcs2000"
    )
    assert (report.created, report.rejected) == (len(LIBRARY), 0)
    return report


def registry(session, rows: list[tuple[str, str, str]]):
    """rows: (uscc, address, 'lon,lat' or '')."""
    header = "统一社会信用代码,名称,住所,经度,纬度"
    lines = [f"{u},店{i},{addr},{coords or ','}" for i, (u, addr, coords) in enumerate(rows)]
    data = io.BytesIO(("\n".join([header, *lines]) + "\n").encode())
    return import_registry(session, data, filename="registry.csv")


def entity(session, uscc: str):
    return session.execute(
        text(
            "SELECT e.location_source, e.address_match_score, a.source_id, "
            "e.location_disagreement_m, "
            "(SELECT code FROM grid_cell WHERE id = p.cell_id) AS cell_code, "
            "ST_X(e.geom) AS lon "
            "FROM market_entity e LEFT JOIN standard_address a ON a.id = e.address_match_id "
            "LEFT JOIN entity_placement p ON p.entity_id = e.id WHERE e.uscc = :u"
        ),
        {"u": uscc},
    ).one()


def test_library_import_report_and_upsert(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    rows = [
        *LIBRARY[:2],
        ("DZ901", "东莞市东城街道东城中路１号", 113.71, 23.01),  # the same door plate as row 2
        ("DZ902", "", 113.7, 23.0),
        ("DZ903", "东城街道某路1号", "abc", 23.0),
        ("DZ904", "广州市天河区天河路1号", 113.3, 23.1),
        ("DZ905", "东城街道东城中路9号", "nan", 23.01),
    ]
    report = import_standard_addresses(
        session, library_csv(rows, "gb18030"), filename="lib.csv", crs="cgcs2000"
    )
    assert report.encoding == "gb18030"
    assert (report.rows, report.created, report.updated, report.unchanged, report.rejected) == (
        7,
        2,
        0,
        0,
        5,
    )
    reasons = {r["row"]: " ".join(r["reasons"]) for r in report.rejected_rows}
    assert "duplicate in file (first at row 2)" in reasons[4]
    assert "address: empty" in reasons[5]
    assert "lon: not a number" in reasons[6]
    assert "coordinates outside the city" in reasons[7]
    assert "lon: not a number" in reasons[8]
    # again, one point moved: one updated, one unchanged
    moved = [LIBRARY[0], (*LIBRARY[1][:2], 113.713, 23.012)]
    again = import_standard_addresses(session, library_csv(moved), crs="cgcs2000")
    assert (again.created, again.updated, again.unchanged) == (0, 1, 1)
    assert session.scalar(text("SELECT count(*) FROM standard_address")) == 2


def test_library_needs_its_columns(session):
    with pytest.raises(InvalidInput, match="经度"):
        import_standard_addresses(session, io.BytesIO("标准地址,纬度\n东城,23\n".encode()))


@pytest.mark.parametrize(
    ("address", "source_id", "score"),
    [
        ("东莞市东城东城中路１号３楼", "DZ001", 1.0),  # full-width digits, a floor, no 街道
        ("东莞市东城街道东城中路3号5栋201室", "DZ002", 1.0),  # a room in a building
        ("东莞市东城街道东城中路3号", "DZ002", 0.6),  # only the building is in the library
        ("南城宏图路12号", "DZ004", 1.0),  # the town picks one of two 宏图路12号
        ("东城街道莞樟路18号", "DZ006", 1.0),  # 十八号 in the library
        ("东城街道S358省道长安段123号", "DZ007", None),  # no road parsed: by similarity
    ],
)
def test_matches(library, session, address, source_id, score):
    result = geocoding.explain(session, address)
    assert result["matched"], result
    assert result["standard_address"]["full_text"] == next(
        r[1] for r in LIBRARY if r[0] == source_id
    )
    if score is not None:
        assert result["score"] == pytest.approx(score, abs=0.01)
    else:
        assert geocoding.THRESHOLD <= result["score"] < 1


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("宏图路12号", "ambiguous"),  # in two towns, 7 km apart, and no town given
        ("东城街道莞樟路19号", "house number"),  # 18号 is 0.67 similar, but another door
        ("东城街道东成中路1号", "similar enough"),  # a typo: 0.4 similar
        ("东城街道某某村委会附近", "no house number"),
        ("南城街道东城中路1号", "similar enough"),  # the right plate, but in the other town
    ],
)
def test_does_not_match(library, session, address, why):
    result = geocoding.explain(session, address)
    assert not result["matched"]
    assert why in result["note"] or (why == "house number" and "similar" in result["note"])


def test_registry_import_geocodes_and_cross_checks(library, session):
    u = [code(i) for i in range(1, 7)]
    report = registry(
        session,
        [
            (u[0], "东莞市东城街道东城中路1号", ""),  # matched: the library's point
            (u[1], "东莞市东城街道某某村委会附近", ""),  # unmatched: no point, no cell
            (u[2], "东莞市东城街道东城中路1号", "113.7112,23.0108"),  # agrees (~140 m)
            (u[3], "东莞市东城街道东城中路1号", "113.75,23.05"),  # 5.9 km away: flagged
            (u[4], "东莞市南城街道某某路7号", "113.79,23.01"),  # no match, coordinates kept
        ],
    )
    assert (report.created, report.rejected) == (5, 0)
    matched = entity(session, u[0])
    assert (matched.location_source, matched.source_id, matched.address_match_score) == (
        "address_match",
        "DZ001",
        1.0,
    )
    assert matched.cell_code is not None and matched.location_disagreement_m is None
    unmatched = entity(session, u[1])
    assert (unmatched.location_source, unmatched.cell_code, unmatched.lon) == (
        "unmatched",
        None,
        None,
    )
    near = entity(session, u[2])
    assert near.location_source == "registry_coordinates" and near.source_id == "DZ001"
    assert 100 < near.location_disagreement_m < geocoding.DISAGREEMENT_M
    far = entity(session, u[3])
    assert far.location_disagreement_m > 5000
    alone = entity(session, u[4])
    assert (alone.location_source, alone.source_id, alone.location_disagreement_m) == (
        "registry_coordinates",
        None,
        None,
    )


def test_address_change_re_geocodes_and_a_verified_point_stays(library, session):
    u = [code(i) for i in range(1, 3)]
    registry(session, [(u[0], "东城街道东城中路1号", ""), (u[1], "东城街道东城中路1号", "")])
    session.execute(
        text(
            "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
            "object_id, changes) SELECT 'test', 'system', 'verify', 'entity', id::text, '{}' "
            "FROM market_entity WHERE uscc = :u"
        ),
        {"u": u[1]},
    )
    session.execute(
        text(
            "UPDATE market_entity SET geom = ST_SetSRID(ST_MakePoint(113.73, 23.03), 4490), "
            "location_source = 'worker_verified' WHERE uscc = :u"
        ),
        {"u": u[1]},
    )
    # both move to an address that is not in the library
    report = registry(session, [(u[0], "东城街道无名路5号", ""), (u[1], "东城街道无名路5号", "")])
    assert report.updated == 2
    moved = entity(session, u[0])
    assert (moved.location_source, moved.cell_code) == ("unmatched", None)
    assert (
        session.scalar(
            text(
                "SELECT count(*) FROM entity_placement p JOIN market_entity e "
                "ON e.id = p.entity_id "
                "WHERE e.uscc = :u"
            ),
            {"u": u[0]},
        )
        == 0
    )
    verified = entity(session, u[1])
    assert verified.location_source == "worker_verified" and verified.cell_code is not None


def test_geocode_entities_after_the_library_grows(library, session):
    u = [code(i) for i in range(1, 4)]
    registry(
        session,
        [
            (u[0], "东城街道新开路8号", ""),
            (u[1], "东城街道新开路8号", "113.70500,23.00500"),
            (u[2], "东城街道东城中路1号", ""),
        ],
    )
    assert entity(session, u[0]).location_source == "unmatched"
    import_standard_addresses(
        session, library_csv([("DZ100", "东城街道新开路8号", 113.705, 23.005)]), crs="cgcs2000"
    )
    result = geocoding.geocode_entities(session)
    assert (result["checked"], result["matched"], result["changed"]) == (3, 3, 2)
    now = entity(session, u[0])
    assert (now.location_source, now.source_id) == ("address_match", "DZ100")
    assert now.cell_code is not None
    kept = entity(session, u[1])
    assert kept.location_source == "registry_coordinates"
    assert kept.location_disagreement_m == pytest.approx(0, abs=1)
    # nothing changes the second time
    assert geocoding.geocode_entities(session)["changed"] == 0
    events = session.scalar(
        text("SELECT count(*) FROM audit_event WHERE action = 'geocode' AND object_type = 'entity'")
    )
    assert events == 2
