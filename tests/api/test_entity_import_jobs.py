"""Registry files through the API: queued, run by a worker, progress and report readable."""

from __future__ import annotations

import io

from backend.domain.uscc import make_code
from backend.services.import_jobs import run_next
from tests.grid_fixtures import load_small_grid

PROBLEM = "application/problem+json"


def post_file(client, headers, data: bytes, name: str = "登记.csv", **form):
    payload = {"file": (io.BytesIO(data), name), **form}
    return client.post(
        "/api/v1/entities/imports",
        data=payload,
        headers=headers,
        content_type="multipart/form-data",
    )


def test_a_queued_import_runs_in_a_worker(app, client, admin_headers):
    load_small_grid(client, admin_headers)
    good = make_code("9", "2", "441900", "MA0000007")
    csv = (
        f"统一社会信用代码,名称,住所,经度,纬度\n{good},测试店,东莞,113.705,23.005\nBAD,坏,东莞,,\n"
    )
    resp = post_file(client, admin_headers, csv.encode("gb18030"), crs="wgs84")
    assert resp.status_code == 202, resp.get_json()
    job = resp.get_json()
    assert job["status"] == "queued" and resp.headers["Location"].endswith(f"/{job['id']}")
    sessions = app.extensions["gridpatrol.sessionmaker"]
    assert run_next(sessions, app.extensions["gridpatrol.engine"]) == job["id"]
    assert run_next(sessions, app.extensions["gridpatrol.engine"]) is None  # queue empty
    done = client.get(f"/api/v1/entities/imports/{job['id']}", headers=admin_headers).get_json()
    assert done["status"] == "done" and done["rows_read"] == 2
    assert done["report"]["created"] == 1 and done["report"]["rejected"] == 1
    assert done["report"]["encoding"] == "gb18030"
    listed = client.get("/api/v1/entities/imports", headers=admin_headers).get_json()
    assert listed[0]["id"] == job["id"]
    found = client.get(f"/api/v1/entities?q={good}", headers=admin_headers).get_json()
    assert found[0]["cell_code"] == "441900003001001"


def test_a_bad_file_fails_its_job_with_a_reason(app, client, admin_headers):
    resp = post_file(client, admin_headers, "名称,住所\nx,y\n".encode())
    job_id = resp.get_json()["id"]
    run_next(app.extensions["gridpatrol.sessionmaker"], app.extensions["gridpatrol.engine"])
    failed = client.get(f"/api/v1/entities/imports/{job_id}", headers=admin_headers).get_json()
    assert failed["status"] == "failed" and "Missing required column" in failed["error"]


def test_bad_uploads_are_4xx(client, admin_headers):
    assert post_file(client, admin_headers, b"").status_code == 422
    resp = post_file(client, admin_headers, b"x", crs="utm")
    assert resp.status_code == 422 and resp.mimetype == PROBLEM
    assert client.get("/api/v1/entities/imports/999999", headers=admin_headers).status_code == 404
