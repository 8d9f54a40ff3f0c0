"""Grid import through the HTTP API: reports, all-or-nothing, QA findings, repair, history."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pyogrio
import shapely
from shapely.geometry import Polygon, box, mapping

from geo import crs as geocrs
from tests.grid_fixtures import (
    cell_boxes,
    cells_fc,
    collection,
    communities_fc,
    feature,
    load_small_grid,
    towns_fc,
    upload,
)

PROBLEM = "application/problem+json"


def count(session, table: str) -> int:
    from sqlalchemy import text

    return session.scalar(text(f"SELECT count(*) FROM {table}"))


def test_import_hierarchy_reports_counts(client, admin_headers, session):
    resp = upload(client, admin_headers, towns_fc(), "town")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "applied"
    assert body["report"]["features"] == {
        "read": 2,
        "accepted": 2,
        "rejected": 0,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
    }
    assert resp.headers["Location"].endswith(f"/imports/{body['id']}")
    assert upload(client, admin_headers, communities_fc(), "community").status_code == 201
    resp = upload(client, admin_headers, cells_fc(), "cell")
    assert resp.get_json()["report"]["features"]["created"] == 16
    assert count(session, "grid_cell") == 16
    cell_events = "SELECT count(*) FROM audit_event WHERE object_type = 'cell'"
    from sqlalchemy import text

    assert session.scalar(text(cell_events)) == 16  # one event per created cell
    again = upload(client, admin_headers, cells_fc(), "cell").get_json()
    assert again["report"]["features"]["unchanged"] == 16
    assert session.scalar(text(cell_events)) == 16  # nothing changed: no new event
    import_events = session.scalar(
        text(
            "SELECT count(*) FROM audit_event WHERE object_type = 'grid_import' AND object_id = :i"
        ),
        {"i": str(again["id"])},
    )
    assert import_events == 1
    assert again["report"]["features"]["created"] == 0
    got = client.get(f"/api/v1/grid/imports/{again['id']}", headers=admin_headers)
    assert got.status_code == 200 and got.get_json()["report"]["features"]["unchanged"] == 16


def test_parent_found_spatially(client, admin_headers, session):
    upload(client, admin_headers, towns_fc(), "town")
    resp = upload(
        client, admin_headers, communities_fc(with_parent=False), "community", parent_field=""
    )
    assert resp.status_code == 201, resp.get_json()
    from sqlalchemy import text

    pairs = dict(session.execute(text("SELECT code, town_code FROM community")).all())
    assert pairs == {c: c[:9] for c in pairs} and len(pairs) == 4


def planted_cells() -> dict:
    """The small grid's cells with three planted faults: 003001001 grows 0.002° east into its
    neighbour (an overlap), 003002001 shrinks 0.002° from the west (a gap) and 004001001 is a
    bow-tie (a self-intersecting ring)."""
    feats = []
    for code, (comm, b) in cell_boxes().items():
        x0, y0, x1, y1 = b
        if code == "441900003001001":
            geom = box(x0, y0, x1 + 0.002, y1)
        elif code == "441900003002001":
            geom = box(x0 + 0.002, y0, x1, y1)
        elif code == "441900004001001":
            geom = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])
        else:
            geom = box(*b)
        feats.append(feature(code, f"网格{code[-6:]}", geom, comm))
    return collection(feats)


def test_planted_overlap_gap_and_bowtie_are_reported_and_rejected(client, admin_headers, session):
    upload(client, admin_headers, towns_fc(), "town")
    upload(client, admin_headers, communities_fc(), "community")
    resp = upload(client, admin_headers, planted_cells(), "cell")
    assert resp.status_code == 422
    assert resp.mimetype == PROBLEM
    body = resp.get_json()
    assert body["title"] == "Import rejected"
    qa = body["report"]["qa"]
    assert body["report"]["status"] == "rejected"
    assert count(session, "grid_cell") == 0  # nothing applied

    assert qa["invalid_count"] == 1
    bad = qa["invalid"][0]
    assert bad["code"] == "441900004001001" and "Self-intersection" in bad["reason"]
    assert bad["repaired"]["type"] == "MultiPolygon"
    overlaps = [o for o in qa["overlaps"] if "441900003001001" in (o["code_a"], o["code_b"])]
    assert len(overlaps) == 1
    # 0.002° × 0.03° at 23°N ≈ 205 m × 3,320 m ≈ 680,000 m²
    assert 640_000 < overlaps[0]["area_m2"] < 720_000
    assert overlaps[0]["index_a"] is not None
    gaps = qa["gaps"]
    planted = [g for g in gaps if g["parent_code"] == "441900003002"]
    assert len(planted) == 1 and 640_000 < planted[0]["area_m2"] < 720_000
    lon, lat = planted[0]["location"]["coordinates"]
    assert 113.73 < lon < 113.733 and 23.0 < lat < 23.03
    # the bow-tie's repair leaves two triangles: the other half of its square is a gap too
    assert any(g["parent_code"] == "441900004001" for g in gaps)
    assert any("repair=true" in r for r in body["report"]["reasons"])


def test_repair_accepts_and_leaves_a_clean_tiling(client, admin_headers, session):
    upload(client, admin_headers, towns_fc(), "town")
    upload(client, admin_headers, communities_fc(), "community")
    resp = upload(client, admin_headers, planted_cells(), "cell", repair=True)
    assert resp.status_code == 201, resp.get_json()
    report = resp.get_json()["report"]
    assert report["remaining_errors"] == {}
    assert report["repairs"]["overlaps_cut"]
    assert report["repairs"]["gaps_filled"]
    assert count(session, "grid_cell") == 16
    qa = client.get("/api/v1/grid/qa?level=cell", headers=admin_headers).get_json()
    cell = qa["levels"]["cell"]
    assert cell["ok"], cell
    assert cell["overlaps_count"] == 0 and cell["gaps_count"] == 0


def test_bad_features_reject_the_whole_file_unless_partial(client, admin_headers, session):
    upload(client, admin_headers, towns_fc(), "town")
    fc = communities_fc()
    fc["features"][1]["properties"]["code"] = "44190000300X"  # malformed code
    fc["features"][2]["geometry"] = {"type": "Point", "coordinates": [113.79, 23.03]}
    fc["features"][3]["properties"]["parent_code"] = "441900999"  # no such town
    resp = upload(client, admin_headers, fc, "community")
    assert resp.status_code == 422
    report = resp.get_json()["report"]
    reasons = {r["index"]: " ".join(r["reasons"]) for r in report["rejected"]}
    assert set(reasons) == {1, 2, 3}
    assert "malformed community code" in reasons[1]
    assert "not a polygon" in reasons[2]
    assert "unknown parent town '441900999'" in reasons[3]
    assert count(session, "community") == 0
    # partial=true applies the good features when what remains is a clean tiling
    towns = towns_fc()
    towns["features"].append(feature("441900005", "万江街道", box(113.82, 23.0, 113.88, 23.06)))
    towns["features"].append(feature("4419", "bad code", box(113.9, 23.0, 114.0, 23.1)))
    resp = upload(client, admin_headers, towns, "town")
    assert resp.status_code == 422 and count(session, "town") == 2
    resp = upload(client, admin_headers, towns, "town", partial=True)
    assert resp.status_code == 201, resp.get_json()
    report = resp.get_json()["report"]
    assert report["features"]["created"] == 1 and report["features"]["unchanged"] == 2
    assert report["rejected"][0]["index"] == 3
    assert count(session, "town") == 3


def test_duplicate_codes_and_projected_coordinates_are_rejected(client, admin_headers):
    fc = towns_fc()
    fc["features"].append(json.loads(json.dumps(fc["features"][0])))
    fc["features"].append(feature("441900005", "万江", box(400000, 2540000, 410000, 2550000)))
    fc["features"].append(feature("441900006", "莞城", {"type": "Polygon", "coordinates": []}))
    fc["features"].append(
        feature("441900101", "石碣", {"type": "Polygon", "coordinates": [[[113.7, 23.0]]]})
    )
    fc["features"].append(feature("441900102", "", box(113.9, 23.0, 113.95, 23.05)))
    report = upload(client, admin_headers, fc, "town").get_json()["report"]
    reasons = {r["index"]: " ".join(r["reasons"]) for r in report["rejected"]}
    assert "appears 2 times" in reasons[0] and "appears 2 times" in reasons[2]
    assert "outside China" in reasons[3]
    assert "geometry is empty" in reasons[4]
    assert "malformed geometry" in reasons[5]
    assert "missing name" in reasons[6]


def test_unreadable_uploads_are_4xx_problems(client, admin_headers, session):
    for data, name in (
        (b"{not json", "a.geojson"),
        (b"PK\x03\x04garbage", "a.zip"),
        (b'{"type": "Point", "coordinates": [1, 2]}', "a.json"),
        (b"", "a.geojson"),
        (b"\x00\x01binary", "a.bin"),
    ):
        resp = upload(client, admin_headers, data, "town", filename=name)
        assert resp.status_code in (400, 422), (name, resp.get_json())
        assert resp.mimetype == PROBLEM
    resp = client.post(
        "/api/v1/grid/imports",
        data={"level": "town"},
        headers=admin_headers,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 422
    assert {e["field"] for e in resp.get_json()["errors"]} == {"file"}
    resp = upload(client, admin_headers, towns_fc(), "planet")
    assert resp.status_code == 422 and resp.get_json()["errors"][0]["field"] == "level"
    resp = upload(client, admin_headers, towns_fc(), "town", crs="utm")
    assert resp.status_code == 422
    assert count(session, "town") == 0


def test_import_needs_admin(client, worker_headers):
    resp = upload(client, worker_headers, towns_fc(), "town")
    assert resp.status_code == 403


def test_boundary_change_keeps_history(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    cells = cells_fc()
    # move the shared border between two cells of one community 0.001° east
    for f in cells["features"]:
        code = f["properties"]["code"]
        if code in ("441900003001001", "441900003001002"):
            geom = shapely.geometry.shape(f["geometry"])
            x0, y0, x1, y1 = geom.bounds
            if code.endswith("001"):
                x1 += 0.001
            else:
                x0 += 0.001
            f["geometry"] = mapping(box(x0, y0, x1, y1))
    resp = upload(client, admin_headers, cells, "cell")
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["report"]["features"]["updated"] == 2
    hist = client.get("/api/v1/grid/cells/441900003001001/history", headers=admin_headers)
    features = hist.get_json()["features"]
    assert [f["properties"]["version"] for f in features] == [2, 1]
    assert features[0]["properties"]["valid_to"] is None
    assert features[1]["properties"]["valid_to"] is not None
    assert features[0]["properties"]["area_m2"] > features[1]["properties"]["area_m2"]
    # a point inside the moved strip was in cell 002 before the change and is in 001 now
    from backend.services.grid_query import cell_at

    old_from = features[1]["properties"]["valid_from"]
    point = (113.7155 + 0.0004, 23.005)
    assert cell_at(session, *point, old_from) == "441900003001002"
    now = client.get(
        f"/api/v1/grid/locate?lon={point[0]}&lat={point[1]}", headers=admin_headers
    ).get_json()
    assert now["cell"]["code"] == "441900003001001"


def _wiggly_ring(x0, y0, x1, y1, per_side=600):
    """A rectangle whose sides carry `per_side` vertices each (a real boundary's density)."""
    t = np.linspace(0, 1, per_side, endpoint=False)
    bottom = np.column_stack([x0 + (x1 - x0) * t, np.full_like(t, y0)])
    right = np.column_stack([np.full_like(t, x1), y0 + (y1 - y0) * t])
    top = np.column_stack([x1 - (x1 - x0) * t, np.full_like(t, y1)])
    left = np.column_stack([np.full_like(t, x0), y1 - (y1 - y0) * t])
    return np.vstack([bottom, right, top, left])


def test_gcj02_file_with_thousands_of_vertices_locates_like_wgs84(client, admin_headers):
    upload(client, admin_headers, towns_fc(), "town")
    upload(client, admin_headers, communities_fc(), "community")
    # Cells with a sinuous shared border (a river-like line of 2,000+ vertices), given in GCJ-02.
    feats, wgs_polys = [], {}
    for code, (comm, (x0, y0, x1, y1)) in cell_boxes().items():
        ring = _wiggly_ring(x0, y0, x1, y1)
        poly = Polygon(ring)
        wgs_polys[code] = poly
        gcj = geocrs.transform_geometry(poly, "wgs84", "gcj02")
        feats.append(feature(code, f"网格{code[-6:]}", gcj, comm))
    assert sum(len(p.exterior.coords) for p in wgs_polys.values()) > 16 * 2000
    resp = upload(client, admin_headers, collection(feats), "cell", crs="gcj02")
    assert resp.status_code == 201, resp.get_json()
    rng = np.random.default_rng(7)
    for _ in range(40):
        lon, lat = rng.uniform(113.7005, 113.8195), rng.uniform(23.0005, 23.0595)
        expected = next(c for c, p in wgs_polys.items() if p.contains(shapely.Point(lon, lat)))
        wgs = client.get(
            f"/api/v1/grid/locate?lon={lon}&lat={lat}&crs=wgs84", headers=admin_headers
        ).get_json()
        glon, glat = geocrs.wgs84_to_gcj02(lon, lat)
        gcj = client.get(
            f"/api/v1/grid/locate?lon={glon}&lat={glat}&crs=gcj02", headers=admin_headers
        ).get_json()
        blon, blat = geocrs.wgs84_to_bd09(lon, lat)
        bd = client.get(
            f"/api/v1/grid/locate?lon={blon}&lat={blat}&crs=bd09", headers=admin_headers
        ).get_json()
        assert wgs["cell"]["code"] == gcj["cell"]["code"] == bd["cell"]["code"] == expected


def test_zipped_shapefile_with_gbk_attributes(client, admin_headers, tmp_path, session):
    path = tmp_path / "towns.shp"
    towns = towns_fc()["features"]
    geoms = np.array(
        [shapely.to_wkb(shapely.geometry.shape(f["geometry"])) for f in towns], dtype=object
    )
    pyogrio.raw.write(
        str(path),
        geoms,
        [
            np.array([f["properties"]["code"] for f in towns], dtype=object),
            np.array([f["properties"]["name"] for f in towns], dtype=object),
        ],
        fields=["TOWN_CODE", "TOWN_NAME"],
        geometry_type="Polygon",
        crs="EPSG:4490",
        driver="ESRI Shapefile",
        encoding="GBK",
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for part in tmp_path.iterdir():
            archive.write(part, f"towns/{part.name}")
    resp = upload(
        client,
        admin_headers,
        buf.getvalue(),
        "town",
        filename="towns.zip",
        code_field="TOWN_CODE",
        name_field="TOWN_NAME",
        parent_field="",
    )
    assert resp.status_code == 201, resp.get_json()
    from sqlalchemy import text

    names = dict(session.execute(text("SELECT code, name FROM town")).all())
    assert names == {"441900003": "东城街道", "441900004": "南城街道"}
