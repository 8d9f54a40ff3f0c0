"""Generation rules through the API run as jobs; bad requests are 4xx."""

from __future__ import annotations

from backend.services.import_jobs import run_next
from tests.grid_fixtures import load_small_grid

PROBLEM = "application/problem+json"


def test_a_rule_runs_as_a_job(app, client, admin_headers):
    load_small_grid(client, admin_headers)
    resp = client.post(
        "/api/v1/tasks/generate", json={"rule": "licence_checks"}, headers=admin_headers
    )
    assert resp.status_code == 202, resp.get_json()
    job = resp.get_json()
    assert job["kind"] == "task_rule" and resp.headers["Location"].endswith(f"/{job['id']}")
    assert run_next(app.extensions["gridpatrol.sessionmaker"], app.extensions["gridpatrol.engine"])
    done = client.get(f"/api/v1/tasks/generate/{job['id']}", headers=admin_headers).get_json()
    assert done["status"] == "done", done
    assert done["report"]["made"] == {"license_check": 0}


def test_bad_generation_requests(client, admin_headers):
    cases = [
        ({"rule": "everything"}, 422),
        ({"rule": "annual_report_campaign"}, 422),  # no year
        ({"rule": "annual_report_campaign", "year": 2025, "start": "2026-11-22"}, 422),
        ({"rule": "first_inspection", "since": "yesterday"}, 422),
    ]
    for body, status in cases:
        resp = client.post("/api/v1/tasks/generate", json=body, headers=admin_headers)
        assert resp.status_code == status, (body, resp.get_json())
        assert resp.mimetype == PROBLEM
    assert client.get("/api/v1/tasks/generate/999999", headers=admin_headers).status_code == 404
