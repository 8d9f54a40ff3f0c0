"""Grid queries through HTTP: collections, one area, locate (with its boundary rule), QA."""

from __future__ import annotations

from sqlalchemy import text

from backend.services import audit
from geo import crs as geocrs
from tests.conftest import make_token
from tests.grid_fixtures import load_small_grid

PROBLEM = "application/problem+json"


def test_cells_by_town_community_and_bbox_paginated(client, admin_headers):
    load_small_grid(client, admin_headers)
    resp = client.get("/api/v1/grid/cells?town=441900003&page_size=3", headers=admin_headers)
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["type"] == "FeatureCollection"
    assert body["numberMatched"] == 8 and body["numberReturned"] == 3
    assert '"total": 8' in resp.headers["X-Pagination"]
    first = body["features"][0]
    assert first["id"] == "441900003001001"
    assert first["geometry"]["type"] == "MultiPolygon"
    lon, lat = first["geometry"]["coordinates"][0][0][0]
    assert 113 < lon < 114 and 22 < lat < 24  # RFC 7946 lon, lat order
    page3 = client.get(
        "/api/v1/grid/cells?town=441900003&page_size=3&page=3", headers=admin_headers
    ).get_json()
    assert [f["id"] for f in page3["features"]] == ["441900003002003", "441900003002004"]
    comm = client.get("/api/v1/grid/cells?community=441900004002", headers=admin_headers)
    assert {f["id"][:12] for f in comm.get_json()["features"]} == {"441900004002"}
    box = client.get(
        "/api/v1/grid/cells?bbox=113.701,23.001,113.71,23.01&geometry=false", headers=admin_headers
    ).get_json()
    assert [f["id"] for f in box["features"]] == ["441900003001001"]
    assert box["features"][0]["geometry"] is None
    towns = client.get("/api/v1/grid/towns", headers=admin_headers).get_json()
    assert [f["id"] for f in towns["features"]] == ["441900003", "441900004"]
    comms = client.get("/api/v1/grid/communities?town=441900004", headers=admin_headers)
    assert comms.get_json()["numberMatched"] == 2


def test_bad_list_parameters_are_422(client, admin_headers):
    for query in (
        "bbox=1,2,3",
        "bbox=5,5,1,1",
        "bbox=a,b,c,d",
        "town=12",
        "page=0",
        "page_size=100000",
        "geometry=maybe",
    ):
        resp = client.get(f"/api/v1/grid/cells?{query}", headers=admin_headers)
        assert resp.status_code == 422, query
        assert resp.mimetype == PROBLEM


def test_one_cell_with_parents_area_and_neighbours(client, admin_headers):
    load_small_grid(client, admin_headers)
    resp = client.get("/api/v1/grid/cells/441900003001004", headers=admin_headers)
    props = resp.get_json()["properties"]
    assert props["parents"]["town"] == {"code": "441900003", "name": "东城街道"}
    assert props["parents"]["community"]["code"] == "441900003001"
    # 0.015° × 0.03° at 23°N ≈ 1,537 m × 3,320 m
    assert 5_000_000 < props["area_m2"] < 5_300_000
    neighbours = {n["code"]: n["shared_boundary_m"] for n in props["neighbours"]}
    # across its community's border too; the diagonal one touches at a corner only
    assert set(neighbours) == {
        "441900003001001",
        "441900003001002",
        "441900003001003",
        "441900003002001",
        "441900003002003",
    }
    assert neighbours["441900003002003"] > 1000
    assert neighbours["441900003001001"] == 0
    missing = client.get("/api/v1/grid/cells/999", headers=admin_headers)
    assert missing.status_code == 404 and missing.mimetype == PROBLEM
    town = client.get("/api/v1/grid/towns/441900004", headers=admin_headers).get_json()
    assert [n["code"] for n in town["properties"]["neighbours"]] == ["441900003"]


def test_locate_in_each_crs_and_outside(client, admin_headers):
    load_small_grid(client, admin_headers)
    lon, lat = 113.81, 23.05
    expected = "441900004002004"
    for name, (x, y) in (
        ("wgs84", (lon, lat)),
        ("cgcs2000", (lon, lat)),
        ("gcj02", geocrs.wgs84_to_gcj02(lon, lat)),
        ("bd09", geocrs.wgs84_to_bd09(lon, lat)),
        ("GCJ02", geocrs.wgs84_to_gcj02(lon, lat)),
    ):
        resp = client.get(f"/api/v1/grid/locate?lon={x}&lat={y}&crs={name}", headers=admin_headers)
        body = resp.get_json()
        assert resp.status_code == 200, (name, body)
        assert body["cell"]["code"] == expected, name
        assert body["community"]["code"] == "441900004002"
        assert body["town"] == {"code": "441900004", "name": "南城街道"}
    outside = client.get("/api/v1/grid/locate?lon=114.2&lat=22.7", headers=admin_headers)
    assert outside.status_code == 404 and outside.mimetype == PROBLEM


def test_locate_boundary_rule_picks_the_smallest_code(client, admin_headers):
    load_small_grid(client, admin_headers)
    # on the edge between 441900003001001 and 441900003001002 (x = 113.715)
    edge = client.get("/api/v1/grid/locate?lon=113.715&lat=23.005", headers=admin_headers)
    body = edge.get_json()
    assert body["cell"]["code"] == "441900003001001" and body["on_boundary"] is True
    # the corner shared by four cells of two communities
    corner = client.get("/api/v1/grid/locate?lon=113.73&lat=23.03", headers=admin_headers)
    assert corner.get_json()["cell"]["code"] == "441900003001002"
    inside = client.get("/api/v1/grid/locate?lon=113.716&lat=23.005", headers=admin_headers)
    assert inside.get_json()["on_boundary"] is False


def test_locate_rejects_bad_coordinates(client, admin_headers):
    for query in (
        "lon=200&lat=23",
        "lon=113&lat=-91",
        "lon=nan&lat=23",
        "lon=113",
        "lon=x&lat=y",
        "lon=113&lat=23&crs=utm50",
    ):
        resp = client.get(f"/api/v1/grid/locate?{query}", headers=admin_headers)
        assert resp.status_code == 422, query
        assert resp.mimetype == PROBLEM


def test_qa_endpoint_finds_problems_in_the_stored_grid(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    clean = client.get("/api/v1/grid/qa", headers=admin_headers).get_json()
    assert clean["ok"] is True
    assert set(clean["levels"]) == {"town", "community", "cell"}
    # Damage the stored grid behind the import's back: one cell grows over its neighbour
    # (an overlap, and it reaches outside its community) and another one is deleted (a gap).
    session.execute(
        text(
            "UPDATE grid_cell SET geom = ST_Multi(ST_Buffer(geom, 0.001, 'join=mitre')) "
            "WHERE code = '441900004001001'"
        )
    )
    session.execute(text("DELETE FROM grid_cell WHERE code = '441900003002004'"))
    # every change needs its audit event, or the transaction cannot commit
    audit.record(session, "update", "cell", "441900004001001", changes={"geom": "grown"})
    audit.record(session, "delete", "cell", "441900003002004", changes={"deleted": True})
    session.commit()
    report = client.get("/api/v1/grid/qa?level=cell&sliver_m2=10", headers=admin_headers).get_json()
    cell = report["levels"]["cell"]
    assert report["ok"] is False and cell["ok"] is False
    assert cell["overlaps_count"] >= 2  # with each neighbour it grew into
    assert {g["parent_code"] for g in cell["gaps"]} == {"441900003002"}
    gap = cell["gaps"][0]
    assert 5_000_000 < gap["area_m2"] < 5_300_000
    assert gap["location"]["type"] == "Point"
    assert [o["code"] for o in cell["outside_parent"]] == ["441900004001001"]
    assert cell["slivers_count"] == 0


def test_qa_bad_level_is_422(client, admin_headers):
    resp = client.get("/api/v1/grid/qa?level=planet", headers=admin_headers)
    assert resp.status_code == 422 and resp.mimetype == PROBLEM


def test_mobile_whereami_defaults_to_gcj02(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    headers = {"Authorization": f"Bearer {make_token(client, session, 'grid_worker')}"}
    me = client.get("/api/mobile/v1/auth/me", headers=headers).get_json()
    resp = client.put(
        "/api/v1/grid/cells/441900004002004/workers",
        json={"primary": me["id"]},
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.get_json()
    x, y = geocrs.wgs84_to_gcj02(113.81, 23.05)
    resp = client.get(f"/api/mobile/v1/whereami?lon={x}&lat={y}", headers=headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["in_territory"] is True and body["cell"]["code"] == "441900004002004"
    # in a cell that is not theirs: no codes, only that it is inside the grid
    x, y = geocrs.wgs84_to_gcj02(113.71, 23.01)
    body = client.get(f"/api/mobile/v1/whereami?lon={x}&lat={y}", headers=headers).get_json()
    assert body == {"in_territory": False, "inside_grid": True}
    body = client.get("/api/mobile/v1/whereami?lon=110&lat=30", headers=headers).get_json()
    assert body == {"in_territory": False, "inside_grid": False}
