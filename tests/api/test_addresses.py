"""The standard address library through the API: an import job that re-matches the registry,
search, the match explanation, and what entities show of their geocoding."""

from __future__ import annotations

import io

from backend.domain.uscc import make_code
from backend.services.import_jobs import run_next
from tests.grid_fixtures import load_small_grid

PROBLEM = "application/problem+json"
LIBRARY = (
    "地址编码,标准地址,经度,纬度\n"
    "DZ1,东莞市东城街道东城中路1号,113.71,23.01\n"
    "DZ2,东莞市南城街道鸿福路106号,113.80,23.04\n"
    "DZ3,东莞市南城街道鸿福路108号,113.801,23.04\n"
)


def upload(client, headers, data: bytes, **form):
    return client.post(
        "/api/v1/addresses/imports",
        data={"file": (io.BytesIO(data), "标准地址.csv"), **form},
        headers=headers,
        content_type="multipart/form-data",
    )


def entities(client, headers, rows):
    body = {
        "changes": [
            {"uscc": make_code("9", "2", "441900", f"MA{i:07d}"), "name": f"店{i}", **row}
            for i, row in enumerate(rows, start=1)
        ],
        "crs": "cgcs2000",
    }
    resp = client.post("/api/v1/entities/changes", json=body, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def by_name(client, headers, name):
    found = client.get(f"/api/v1/entities?q={name}", headers=headers).get_json()
    return client.get(f"/api/v1/entities/{found[0]['id']}", headers=headers)


def test_library_job_rematches_the_registry(app, client, admin_headers):
    load_small_grid(client, admin_headers)
    entities(
        client,
        admin_headers,
        [
            {"registered_address": "东莞市南城街道鸿福路一百零六号"},
            {"registered_address": "东莞市东城街道东城中路1号", "lon": 113.76, "lat": 23.05},
        ],
    )
    before = by_name(client, admin_headers, "店1").get_json()
    assert (before["location_source"], before["unplaced_reason"]) == (
        "unmatched",
        "address_unmatched",
    )
    listed = client.get("/api/v1/entities?location_source=unmatched", headers=admin_headers)
    assert [e["name"] for e in listed.get_json()] == ["店1"]

    resp = upload(client, admin_headers, LIBRARY.encode("gb18030"), crs="cgcs2000")
    assert resp.status_code == 202, resp.get_json()
    job = resp.get_json()
    assert job["kind"] == "standard_addresses"
    sessions, engine = (
        app.extensions["gridpatrol.sessionmaker"],
        app.extensions["gridpatrol.engine"],
    )
    assert run_next(sessions, engine) == job["id"]
    done = client.get(f"/api/v1/addresses/imports/{job['id']}", headers=admin_headers).get_json()
    assert done["status"] == "done", done
    assert (done["report"]["created"], done["report"]["encoding"]) == (3, "gb18030")
    assert done["report"]["geocoding"]["matched"] == 2
    # the registry's job list and this one are apart
    assert (
        client.get(f"/api/v1/entities/imports/{job['id']}", headers=admin_headers).status_code
        == 404
    )

    after = by_name(client, admin_headers, "店1").get_json()
    assert (after["location_source"], after["matched_address"]) == (
        "address_match",
        "东莞市南城街道鸿福路106号",
    )
    assert after["cell_code"] is not None and after["unplaced_reason"] is None
    far = by_name(client, admin_headers, "店2").get_json()
    assert far["location_source"] == "registry_coordinates" and far["location_disagrees"]
    assert far["location_disagreement_m"] > 5000
    flagged = client.get("/api/v1/entities?location_disagrees=true", headers=admin_headers)
    assert [e["name"] for e in flagged.get_json()] == ["店2"]


def test_search_and_match(client, admin_headers, worker_headers, session):
    load_small_grid(client, admin_headers)
    from backend.services.address_import import import_standard_addresses

    import_standard_addresses(session, io.BytesIO(LIBRARY.encode()), crs="cgcs2000")
    found = client.get("/api/v1/addresses?q=鸿福路106号", headers=worker_headers)
    assert found.status_code == 200
    assert found.get_json()[0]["source_id"] == "DZ2"
    assert found.headers["X-Pagination"]
    town = client.get("/api/v1/addresses?town=南城", headers=admin_headers).get_json()
    assert {a["source_id"] for a in town} == {"DZ2", "DZ3"}
    match = client.post(
        "/api/v1/addresses/match",
        json={"address": "广东省东莞市南城鸿福路１０８号２楼"},
        headers=worker_headers,
    ).get_json()
    assert match["matched"] and match["standard_address"]["full_text"].endswith("鸿福路108号")
    assert match["door_plate"] == "鸿福路108号" and match["score"] == 1.0
    miss = client.post(
        "/api/v1/addresses/match", json={"address": "南城鸿福路107号"}, headers=admin_headers
    ).get_json()
    assert not miss["matched"] and miss["candidates"]


def test_dispatcher_address_correction_re_geocodes(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    from backend.services.address_import import import_standard_addresses

    import_standard_addresses(session, io.BytesIO(LIBRARY.encode()), crs="cgcs2000")
    entities(client, admin_headers, [{"registered_address": "东莞市南城街道某路1号"}])
    entity = by_name(client, admin_headers, "店1")
    assert entity.get_json()["location_source"] == "unmatched"
    resp = client.patch(
        f"/api/v1/entities/{entity.get_json()['id']}",
        json={"business_address": "东莞市南城街道鸿福路108号"},
        headers={**admin_headers, "If-Match": entity.headers["ETag"]},
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["location_source"], body["matched_address"]) == (
        "address_match",
        "东莞市南城街道鸿福路108号",
    )
    assert body["cell_code"] is not None


def test_bad_input_is_4xx(client, admin_headers):
    assert upload(client, admin_headers, b"").status_code == 422
    resp = client.post("/api/v1/addresses/match", json={"address": ""}, headers=admin_headers)
    assert resp.status_code == 422 and resp.mimetype == PROBLEM
    resp = client.post(
        "/api/v1/addresses/match", json={"address": "x", "threshold": 7}, headers=admin_headers
    )
    assert resp.status_code == 422
    assert client.get("/api/v1/addresses?bbox=1,2", headers=admin_headers).status_code == 422
    assert client.get("/api/v1/addresses/imports/424242", headers=admin_headers).status_code == 404
