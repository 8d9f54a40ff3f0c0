"""Every route × every role: who may call what. A route missing from MATRIX fails the suite,
so a new endpoint cannot ship without deciding who may use it. Plus: a worker cannot reach
another cell's data by guessing codes or ids."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import text

from backend.domain.uscc import make_code
from backend.services import audit, import_jobs, placement, task_rules
from backend.services.entity_import import import_registry
from tests.conftest import make_token
from tests.grid_fixtures import load_small_grid

ROLES = (
    "admin",
    "city_dispatcher",
    "town_dispatcher",
    "community_dispatcher",
    "grid_worker",
    "department_officer",
    "auditor",
)
ALL = frozenset(ROLES)
DISPATCHERS = frozenset({"city_dispatcher", "town_dispatcher", "community_dispatcher"})
PUBLIC = "public"
USER_READERS = frozenset({"admin", "auditor"}) | DISPATCHERS
READERS = USER_READERS
WRITERS = frozenset({"admin"}) | DISPATCHERS
WORKER = frozenset({"grid_worker"})
REFERRAL_READERS = READERS | {"department_officer"}
OFFICERS = frozenset({"admin", "department_officer"})
# any signed-in role may ask; who sees a given photo is row-level (404 for the others)
NOT_FOUND_FOR_OTHERS = "not-found-for-others"

MATRIX: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/api/openapi.json"): PUBLIC,
    ("GET", "/api/docs"): PUBLIC,
    ("GET", "/api/docs/assets/<path:filename>"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/refresh"): PUBLIC,
    ("GET", "/api/v1/auth/me"): ALL,
    ("POST", "/api/v1/auth/logout"): ALL,
    ("POST", "/api/mobile/v1/auth/login"): PUBLIC,
    ("POST", "/api/mobile/v1/auth/refresh"): PUBLIC,
    ("GET", "/api/mobile/v1/auth/me"): ALL,
    ("POST", "/api/mobile/v1/auth/logout"): ALL,
    ("GET", "/api/mobile/v1/whereami"): ALL,
    ("GET", "/api/v1/users"): USER_READERS,
    ("POST", "/api/v1/users"): frozenset({"admin"}),
    ("GET", "/api/v1/users/<int:user_id>"): USER_READERS,
    ("PATCH", "/api/v1/users/<int:user_id>"): frozenset({"admin"}),
    ("GET", "/api/v1/users/<int:user_id>/cells"): ALL,
    ("GET", "/api/v1/grid/towns"): ALL,
    ("GET", "/api/v1/grid/towns/<code>"): ALL,
    ("GET", "/api/v1/grid/towns/<code>/history"): ALL,
    ("GET", "/api/v1/grid/communities"): ALL,
    ("GET", "/api/v1/grid/communities/<code>"): ALL,
    ("GET", "/api/v1/grid/communities/<code>/history"): ALL,
    ("GET", "/api/v1/grid/cells"): ALL,
    ("GET", "/api/v1/grid/cells/<code>"): ALL,
    ("GET", "/api/v1/grid/cells/<code>/history"): ALL,
    ("GET", "/api/v1/grid/cells/<code>/workers"): ALL,
    ("PUT", "/api/v1/grid/cells/<code>/workers"): frozenset({"admin"}) | DISPATCHERS,
    ("GET", "/api/v1/grid/locate"): ALL,
    ("GET", "/api/v1/grid/qa"): frozenset({"admin", "city_dispatcher", "auditor"}),
    ("GET", "/api/v1/grid/imports"): frozenset({"admin"}),
    ("POST", "/api/v1/grid/imports"): frozenset({"admin"}),
    ("GET", "/api/v1/grid/imports/<int:import_id>"): frozenset({"admin"}),
    ("GET", "/api/v1/audit"): frozenset({"admin", "auditor"}),
    ("GET", "/api/v1/entities"): ALL,
    ("POST", "/api/v1/entities/changes"): frozenset({"admin"}),
    ("GET", "/api/v1/entities/imports"): frozenset({"admin"}),
    ("POST", "/api/v1/entities/imports"): frozenset({"admin"}),
    ("GET", "/api/v1/entities/imports/<int:job_id>"): frozenset({"admin"}),
    ("GET", "/api/v1/entities/<int:entity_id>"): ALL,
    ("GET", "/api/v1/tasks"): READERS,
    ("GET", "/api/v1/tasks/<int:task_id>"): READERS,
    ("POST", "/api/v1/tasks/<int:task_id>/assign"): WRITERS,
    ("POST", "/api/v1/tasks/<int:task_id>/close"): WRITERS,
    ("POST", "/api/v1/tasks/<int:task_id>/return"): WRITERS,
    ("POST", "/api/v1/tasks/<int:task_id>/cancel"): WRITERS,
    ("POST", "/api/v1/tasks/assign"): WRITERS,
    ("POST", "/api/v1/tasks/generate"): frozenset({"admin", "city_dispatcher"}),
    ("GET", "/api/v1/tasks/generate/<int:job_id>"): frozenset({"admin", "city_dispatcher"}),
    ("POST", "/api/v1/leads"): WRITERS,
    ("GET", "/api/mobile/v1/tasks"): WORKER,
    ("GET", "/api/mobile/v1/tasks/<int:task_id>"): WORKER,
    ("POST", "/api/mobile/v1/tasks/<int:task_id>/accept"): WORKER,
    ("POST", "/api/mobile/v1/tasks/<int:task_id>/decline"): WORKER,
    ("POST", "/api/mobile/v1/tasks/<int:task_id>/check-in"): WORKER,
    ("POST", "/api/mobile/v1/attachments"): WORKER,
    ("POST", "/api/mobile/v1/submissions"): WORKER,
    ("POST", "/api/mobile/v1/sync"): WORKER,
    ("POST", "/api/mobile/v1/leads"): WORKER,
    ("GET", "/api/mobile/v1/permit-types"): WORKER,
    ("GET", "/api/v1/calendar/<int:year>"): ALL,
    ("PUT", "/api/v1/calendar/<int:year>"): frozenset({"admin"}),
    ("POST", "/api/v1/calendar/imports"): frozenset({"admin"}),
    ("GET", "/api/v1/calendar/deadline"): ALL,
    ("GET", "/api/v1/referrals"): REFERRAL_READERS,
    ("GET", "/api/v1/referrals/<int:referral_id>"): REFERRAL_READERS,
    ("POST", "/api/v1/referrals/<int:referral_id>/accept"): OFFICERS,
    ("POST", "/api/v1/referrals/<int:referral_id>/return"): OFFICERS,
    ("POST", "/api/v1/referrals/<int:referral_id>/start"): OFFICERS,
    ("POST", "/api/v1/referrals/<int:referral_id>/conclude"): OFFICERS,
    ("POST", "/api/v1/referrals/<int:referral_id>/reroute"): WRITERS,
    ("POST", "/api/v1/referrals/<int:referral_id>/close"): WRITERS,
    ("POST", "/api/v1/referrals/reroute"): WRITERS,
    ("GET", "/api/v1/referrals/stats"): REFERRAL_READERS,
    ("POST", "/api/v1/routing/explain"): REFERRAL_READERS,
    ("GET", "/api/v1/routing/rules"): REFERRAL_READERS,
    ("POST", "/api/v1/routing/rules"): frozenset({"admin"}),
    ("PATCH", "/api/v1/routing/rules/<int:rule_id>"): frozenset({"admin"}),
    ("GET", "/api/v1/departments"): ALL,
    ("GET", "/api/v1/permit-types"): ALL,
    ("POST", "/api/v1/departments"): frozenset({"admin"}),
    ("GET", "/api/v1/departments/<code>"): ALL,
    ("PATCH", "/api/v1/departments/<code>"): frozenset({"admin"}),
    ("GET", "/api/v1/dispatch/queue"): WRITERS,
    ("GET", "/api/v1/attachments/<int:attachment_id>"): NOT_FOUND_FOR_OTHERS,
    ("GET", "/api/v1/addresses"): ALL,
    ("POST", "/api/v1/addresses/match"): ALL,
    ("GET", "/api/v1/addresses/imports"): frozenset({"admin"}),
    ("POST", "/api/v1/addresses/imports"): frozenset({"admin"}),
    ("GET", "/api/v1/addresses/imports/<int:job_id>"): frozenset({"admin"}),
    ("PATCH", "/api/v1/entities/<int:entity_id>"): frozenset({"admin"}) | DISPATCHERS,
    ("GET", "/api/v1/outbox"): frozenset({"admin", "auditor"}),
    ("POST", "/api/v1/outbox/replay"): frozenset({"admin"}),
}

MY_CELL = "441900003001001"
OTHER_CELL = "441900004002004"
QUERY = {
    "/api/v1/grid/locate": "?lon=113.705&lat=23.005",
    "/api/mobile/v1/whereami": "?lon=113.705&lat=23.005&crs=wgs84",
    "/api/v1/calendar/deadline": "?start=2026-11-20&days=10",
    "/api/v1/referrals/stats": "?from=2026-01-01&to=2026-12-31",
}


def app_routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((method, rule.rule))
    return out


@pytest.fixture()
def world(client, admin_headers, session):
    """The small grid, a token per role (territories around MY_CELL), a worker in MY_CELL."""
    load_small_grid(client, admin_headers)
    scope = {
        "town_dispatcher": {"town_code": "441900003"},
        "community_dispatcher": {"community_code": "441900003001"},
        "department_officer": {"department_code": "SAMR"},
    }

    def mint(role: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {make_token(client, session, role, **scope.get(role, {}))}"
        }

    headers = {role: mint(role) for role in ROLES}
    worker_id = client.get("/api/v1/auth/me", headers=headers["grid_worker"]).get_json()["id"]
    resp = client.put(
        f"/api/v1/grid/cells/{MY_CELL}/workers", json={"primary": worker_id}, headers=admin_headers
    )
    assert resp.status_code == 200
    import_id = client.get("/api/v1/grid/imports", headers=admin_headers).get_json()[0]["id"]
    uscc = make_code("9", "2", "441900", "MA0000001")
    import_registry(
        session,
        io.BytesIO(
            f"统一社会信用代码,名称,住所,经度,纬度\n{uscc},网格里的店,东莞市东城街道,113.705,23.005\n".encode()
        ),
    )
    session.commit()
    entity_id = session.scalar(text("SELECT id FROM market_entity WHERE uscc = :u"), {"u": uscc})
    made = task_rules.first_inspection(session, entity_ids=[entity_id])
    assert made == {"address_check": 1, "license_display": 1}
    task_id = session.scalar(
        text("SELECT id FROM patrol_task WHERE assignee_id = :w ORDER BY id LIMIT 1"),
        {"w": worker_id},
    )
    job = import_jobs.submit(session, b"x", "x.csv", encoding=None, crs="wgs84", user_id=None)
    rule_job = import_jobs.submit_rule(session, "licence_checks", {}, None)
    referral_id = _referral(session, task_id)
    library_job = import_jobs.submit(
        session, b"x", "x.csv", encoding=None, crs="wgs84", user_id=None, kind="standard_addresses"
    )
    session.commit()
    return {
        "headers": headers,
        "worker_id": worker_id,
        "import_id": import_id,
        "mint": mint,
        "entity_id": entity_id,
        "job_id": job.id,
        "library_job_id": library_job.id,
        "rule_job_id": rule_job.id,
        "referral_id": referral_id,
        "rule_id": session.scalar(text("SELECT min(id) FROM routing_rule")),
        "task_id": task_id,
    }


def _referral(session, task_id: int) -> int:
    """A finding of MY_CELL's task referred to market supervision's branch in its town."""
    sid = "00000000-0000-4000-8000-000000000001"
    session.execute(
        text(
            "INSERT INTO submission (id, task_id, worker_id, body_sha256, outcome, response) "
            "SELECT :s, t.id, t.assignee_id, repeat('0', 64), '{}', '{}' FROM patrol_task t "
            "WHERE t.id = :t"
        ),
        {"s": sid, "t": task_id},
    )
    finding = session.scalar(
        text(
            "INSERT INTO finding (type, task_id, submission_id, entity_id) SELECT "
            "'license_not_displayed', t.id, :s, t.entity_id FROM patrol_task t WHERE t.id = :t "
            "RETURNING id"
        ),
        {"s": sid, "t": task_id},
    )
    rid = session.scalar(
        text(
            "INSERT INTO referral (finding_id, department_code, town_code, due_on) "
            "VALUES (:f, 'SAMR', '441900003', CURRENT_DATE + 10) RETURNING id"
        ),
        {"f": finding},
    )
    audit.record(session, "create", "referral", rid, changes={})
    session.commit()
    return int(rid)


def concrete(rule: str, world) -> str:
    code = {"towns": "441900003", "communities": "441900003001", "cells": MY_CELL}
    path = rule.replace("<int:user_id>", str(world["worker_id"]))
    path = path.replace("<int:import_id>", str(world["import_id"]))
    path = path.replace("<int:entity_id>", str(world["entity_id"]))
    job = world["library_job_id"] if rule.startswith("/api/v1/addresses/") else world["job_id"]
    if rule.startswith("/api/v1/tasks/generate"):
        job = world["rule_job_id"]
    path = path.replace("<int:job_id>", str(job))
    path = path.replace("<path:filename>", "swagger-ui.css")
    path = path.replace("<int:task_id>", str(world["task_id"]))
    path = path.replace("<int:referral_id>", str(world["referral_id"]))
    path = path.replace("<int:rule_id>", str(world["rule_id"]))
    path = path.replace("<int:attachment_id>", "1")
    path = path.replace("/departments/<code>", "/departments/SAMR")
    path = path.replace("<int:year>", "2026")
    for collection, value in code.items():
        path = path.replace(f"/{collection}/<code>", f"/{collection}/{value}")
    assert "<" not in path, path
    return path + QUERY.get(rule, "")


def test_every_route_has_a_rule(app):
    missing = app_routes(app) - set(MATRIX)
    assert not missing, f"routes without an entry in MATRIX: {sorted(missing)}"
    stale = set(MATRIX) - app_routes(app)
    assert not stale, f"MATRIX names routes that do not exist: {sorted(stale)}"


def test_role_route_matrix(app, client, world):
    failures = []
    routes = sorted(MATRIX)
    for method, rule in routes:
        allowed = MATRIX[(method, rule)]
        url = concrete(rule, world)
        anonymous = client.open(url, method=method, json={})
        if allowed == PUBLIC:
            if anonymous.status_code in (401, 403):
                failures.append(
                    f"{method} {rule}: public but anonymous got {anonymous.status_code}"
                )
            continue
        if anonymous.status_code != 401:
            failures.append(f"{method} {rule}: anonymous got {anonymous.status_code}, not 401")
        if allowed == NOT_FOUND_FOR_OTHERS:
            for role in ROLES:
                resp = client.open(url, method=method, headers=world["headers"][role])
                if resp.status_code not in (200, 404):
                    failures.append(f"{method} {rule}: {role} got {resp.status_code}")
            continue
        for role in ROLES:
            # logout ends the session of its token: give it a token of its own
            headers = world["mint"](role) if rule.endswith("/logout") else world["headers"][role]
            resp = client.open(url, method=method, json={}, headers=headers)
            if role in allowed and resp.status_code in (401, 403, 404, 405):
                failures.append(f"{method} {rule}: {role} should pass, got {resp.status_code}")
            if role not in allowed and resp.status_code != 403:
                failures.append(f"{method} {rule}: {role} should get 403, got {resp.status_code}")
            if resp.status_code >= 500:
                failures.append(f"{method} {rule}: {role} got {resp.status_code}")
    assert not failures, "\n".join(failures)


def test_a_worker_cannot_reach_another_cell_by_guessing(client, world, admin_headers, session):
    worker = world["headers"]["grid_worker"]
    for url in (
        f"/api/v1/grid/cells/{OTHER_CELL}",
        f"/api/v1/grid/cells/{OTHER_CELL}/history",
        f"/api/v1/grid/cells/{OTHER_CELL}/workers",
        "/api/v1/grid/communities/441900004002",
        "/api/v1/grid/towns/441900004",
        "/api/v1/grid/locate?lon=113.81&lat=23.05",
    ):
        resp = client.get(url, headers=worker)
        assert resp.status_code == 404, (url, resp.status_code)
    listed = client.get("/api/v1/grid/cells", headers=worker).get_json()
    assert [f["id"] for f in listed["features"]] == [MY_CELL]
    assert client.get("/api/v1/grid/communities", headers=worker).get_json()["numberMatched"] == 1
    # other people: not even their existence
    other = client.post(
        "/api/v1/users",
        json={"username": "someone-else", "role": "grid_worker", "password": "a-good-password-1"},
        headers=admin_headers,
    ).get_json()
    assert client.get(f"/api/v1/users/{other['id']}/cells", headers=worker).status_code == 404
    assert client.get("/api/v1/users/999999/cells", headers=worker).status_code == 404
    # entities: theirs yes; one placed in another cell does not exist for them
    listed = client.get("/api/v1/entities", headers=worker).get_json()
    assert [e["id"] for e in listed] == [world["entity_id"]]
    session.execute(
        text(
            "UPDATE market_entity SET geom = ST_SetSRID(ST_MakePoint(113.81, "
            "23.05), 4490) WHERE id = :i"
        ),
        {"i": world["entity_id"]},
    )
    audit.record(session, "correct", "entity", world["entity_id"], changes={"moved": True})
    placement.place_entities(session, [world["entity_id"]])
    session.commit()
    assert client.get(f"/api/v1/entities/{world['entity_id']}", headers=worker).status_code == 404
    assert client.get("/api/v1/entities", headers=worker).get_json() == []
    own = client.get(f"/api/v1/users/{world['worker_id']}/cells", headers=worker).get_json()
    assert [c["cell_code"] for c in own] == [MY_CELL]


def test_dispatchers_are_confined_to_their_territory(client, world):
    town = world["headers"]["town_dispatcher"]
    community = world["headers"]["community_dispatcher"]
    assert client.get("/api/v1/grid/cells/441900003002001", headers=town).status_code == 200
    assert client.get("/api/v1/grid/cells/441900004001001", headers=town).status_code == 404
    assert client.get("/api/v1/grid/cells/441900003002001", headers=community).status_code == 404
    cells = client.get("/api/v1/grid/cells?geometry=false", headers=community).get_json()
    assert {f["id"][:12] for f in cells["features"]} == {"441900003001"}
    towns = client.get("/api/v1/grid/towns", headers=community).get_json()
    assert [f["id"] for f in towns["features"]] == ["441900003"]
