"""Accounts and the cell roster through HTTP: territory, If-Match, masking, audit events."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import make_token
from tests.grid_fixtures import load_small_grid

PROBLEM = "application/problem+json"


def events(session, object_type, object_id=None):
    sql = "SELECT action, changes FROM audit_event WHERE object_type = :t"
    params = {"t": object_type}
    if object_id is not None:
        sql += " AND object_id = :i"
        params["i"] = str(object_id)
    return session.execute(text(sql + " ORDER BY id"), params).all()


def new_user(client, admin_headers, **body):
    body.setdefault("password", "a-good-password-1")
    resp = client.post("/api/v1/users", json=body, headers=admin_headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_create_read_update_with_if_match(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    user = new_user(
        client,
        admin_headers,
        username="li.wei",
        role="community_dispatcher",
        community_code="441900003002",
        display_name="李伟",
        phone="13912345678",
    )
    assert user["town_code"] == "441900003"  # implied by the community
    assert [e.action for e in events(session, "user", user["id"])] == ["create"]
    got = client.get(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert got.headers["ETag"] == '"1"'
    url = f"/api/v1/users/{user['id']}"
    assert (
        client.patch(url, json={"display_name": "李伟伟"}, headers=admin_headers).status_code == 428
    )
    stale = client.patch(
        url, json={"display_name": "x"}, headers={**admin_headers, "If-Match": '"7"'}
    )
    assert stale.status_code == 412 and stale.mimetype == PROBLEM
    ok = client.patch(
        url, json={"display_name": "李伟伟"}, headers={**admin_headers, "If-Match": '"1"'}
    )
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    updates = [e for e in events(session, "user", user["id"]) if e.action == "update"]
    assert len(updates) == 1
    assert updates[0].changes == {"display_name": {"from": "李伟", "to": "李伟伟"}}
    # the same stale version again: refused, nothing written
    again = client.patch(
        url, json={"display_name": "y"}, headers={**admin_headers, "If-Match": '"1"'}
    )
    assert again.status_code == 412
    assert len([e for e in events(session, "user", user["id"]) if e.action == "update"]) == 1


def test_role_needs_its_territory(client, admin_headers):
    load_small_grid(client, admin_headers)
    cases = [
        ({"role": "town_dispatcher"}, "town_code"),
        ({"role": "community_dispatcher"}, "community_code"),
        ({"role": "department_officer"}, "department_code"),
        ({"role": "town_dispatcher", "town_code": "441900999"}, "town_code"),
        ({"role": "community_dispatcher", "community_code": "441900003999"}, "community_code"),
    ]
    for i, (body, field) in enumerate(cases):
        resp = client.post(
            "/api/v1/users",
            json={"username": f"u{i}x", "password": "a-good-password-1", **body},
            headers=admin_headers,
        )
        assert resp.status_code == 422, body
        assert resp.get_json()["errors"][0]["field"] == field
    weak = client.post(
        "/api/v1/users",
        json={"username": "weak", "password": "aaaaaaaaaaaa", "role": "auditor"},
        headers=admin_headers,
    )
    assert weak.status_code == 422
    new_user(client, admin_headers, username="dup", role="auditor")
    dup = client.post(
        "/api/v1/users",
        json={"username": "dup", "password": "a-good-password-1", "role": "auditor"},
        headers=admin_headers,
    )
    assert dup.status_code == 409


def test_phone_numbers_are_masked_for_roles_that_do_not_need_them(client, admin_headers, session):
    user = new_user(
        client, admin_headers, username="zhang", role="city_dispatcher", phone="13812345678"
    )
    auditor = {"Authorization": f"Bearer {make_token(client, session, 'auditor')}"}
    assert (
        client.get(f"/api/v1/users/{user['id']}", headers=admin_headers).get_json()["phone"]
        == "13812345678"
    )
    assert (
        client.get(f"/api/v1/users/{user['id']}", headers=auditor).get_json()["phone"]
        == "138****5678"
    )
    listed = client.get("/api/v1/users?q=zhang", headers=auditor).get_json()
    assert [u["phone"] for u in listed] == ["138****5678"]


def test_dispatchers_see_users_of_their_territory_only(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    w1 = new_user(client, admin_headers, username="wk1", role="grid_worker")
    w2 = new_user(client, admin_headers, username="wk2", role="grid_worker")
    client.put(
        "/api/v1/grid/cells/441900003001001/workers",
        json={"primary": w1["id"]},
        headers=admin_headers,
    )
    client.put(
        "/api/v1/grid/cells/441900004001001/workers",
        json={"primary": w2["id"]},
        headers=admin_headers,
    )
    town3 = {
        "Authorization": "Bearer "
        + make_token(client, session, "town_dispatcher", town_code="441900003")
    }
    names = {u["username"] for u in client.get("/api/v1/users", headers=town3).get_json()}
    assert "wk1" in names and "wk2" not in names
    assert client.get(f"/api/v1/users/{w2['id']}", headers=town3).status_code == 404
    assert client.get(f"/api/v1/users/{w2['id']}/cells", headers=town3).status_code == 404
    cells = client.get(f"/api/v1/users/{w1['id']}/cells", headers=town3).get_json()
    assert [c["cell_code"] for c in cells] == ["441900003001001"]


def test_roster_both_ways_with_primary_rules(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    a = new_user(client, admin_headers, username="wka", role="grid_worker")
    b = new_user(client, admin_headers, username="wkb", role="grid_worker")
    c = new_user(client, admin_headers, username="wkc", role="auditor")
    url = "/api/v1/grid/cells/441900003001001/workers"
    resp = client.put(url, json={"primary": a["id"], "backups": [b["id"]]}, headers=admin_headers)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["primary"]["username"] == "wka" and [w["username"] for w in body["backups"]] == [
        "wkb"
    ]
    assert len(events(session, "cell_roster", "441900003001001")) == 1
    # the same roster again: nothing changes, no event
    client.put(url, json={"primary": a["id"], "backups": [b["id"]]}, headers=admin_headers)
    assert len(events(session, "cell_roster", "441900003001001")) == 1
    # a worker is primary in one cell only
    other = client.put(
        "/api/v1/grid/cells/441900003001002/workers",
        json={"primary": a["id"]},
        headers=admin_headers,
    )
    assert other.status_code == 409 and other.mimetype == PROBLEM
    # only active grid workers; not the same person twice
    assert client.put(url, json={"primary": c["id"]}, headers=admin_headers).status_code == 422
    assert (
        client.put(
            url, json={"primary": a["id"], "backups": [a["id"]]}, headers=admin_headers
        ).status_code
        == 422
    )
    assert client.put(url, json={"primary": "x"}, headers=admin_headers).status_code == 422
    assert (
        client.put(
            "/api/v1/grid/cells/nope/workers", json={"primary": None}, headers=admin_headers
        ).status_code
        == 404
    )
    # b becomes a backup elsewhere too: both ways
    client.put(
        "/api/v1/grid/cells/441900003001002/workers",
        json={"backups": [b["id"]]},
        headers=admin_headers,
    )
    cells = client.get(f"/api/v1/users/{b['id']}/cells", headers=admin_headers).get_json()
    assert [(x["cell_code"], x["duty"]) for x in cells] == [
        ("441900003001001", "backup"),
        ("441900003001002", "backup"),
    ]
    got = client.get(url, headers=admin_headers).get_json()
    assert got["primary"]["user_id"] == a["id"]
    change = events(session, "cell_roster", "441900003001002")[-1].changes
    assert change == {"backups": {"from": [], "to": [b["id"]]}}


def test_community_dispatcher_manages_only_its_cells(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    w = new_user(
        client, admin_headers, username="wkz", role="grid_worker", community_code="441900003001"
    )
    disp = {
        "Authorization": "Bearer "
        + make_token(client, session, "community_dispatcher", community_code="441900003001")
    }
    ok = client.put(
        "/api/v1/grid/cells/441900003001003/workers", json={"primary": w["id"]}, headers=disp
    )
    assert ok.status_code == 200
    out = client.put(
        "/api/v1/grid/cells/441900004001001/workers", json={"primary": None}, headers=disp
    )
    assert out.status_code == 404


def test_roster_writes_stay_in_the_callers_territory(client, admin_headers, session):
    """A community dispatcher cannot bind another town's worker (404 like any out-of-scope
    object: nothing written, no event), and a 409 never names a cell outside its territory."""
    load_small_grid(client, admin_headers)
    own = new_user(
        client, admin_headers, username="own", role="grid_worker", community_code="441900003001"
    )
    far = new_user(client, admin_headers, username="far", role="grid_worker")
    homeless = new_user(client, admin_headers, username="homeless", role="grid_worker")
    client.put(
        "/api/v1/grid/cells/441900004001001/workers",
        json={"primary": far["id"]},
        headers=admin_headers,
    )
    disp = {
        "Authorization": "Bearer "
        + make_token(client, session, "community_dispatcher", community_code="441900003001")
    }
    url = "/api/v1/grid/cells/441900003001001/workers"
    before = events(session, "cell_roster")
    for body in (
        {"primary": own["id"], "backups": [far["id"]]},
        {"primary": far["id"]},
        {"backups": [homeless["id"]]},
    ):
        resp = client.put(url, json=body, headers=disp)
        assert resp.status_code == 404 and resp.mimetype == PROBLEM, resp.get_json()
        assert "441900004" not in resp.get_json()["detail"]
    assert events(session, "cell_roster") == before
    assert client.get(url, headers=admin_headers).get_json()["primary"] is None
    # the far worker still sees only its own cell
    far_cells = client.get(f"/api/v1/users/{far['id']}/cells", headers=admin_headers).get_json()
    assert [c["cell_code"] for c in far_cells] == ["441900004001001"]

    # a worker of this community who is primary in another town: the 409 does not say where
    mixed = new_user(
        client, admin_headers, username="mixed", role="grid_worker", community_code="441900003001"
    )
    client.put(
        "/api/v1/grid/cells/441900004001002/workers",
        json={"primary": mixed["id"]},
        headers=admin_headers,
    )
    clash = client.put(url, json={"primary": mixed["id"]}, headers=disp)
    assert clash.status_code == 409 and clash.mimetype == PROBLEM
    assert "441900004" not in clash.get_json()["detail"]
    assert "outside your territory" in clash.get_json()["detail"]
    # inside the territory the 409 names the cell, as before
    client.put(
        "/api/v1/grid/cells/441900003001002/workers",
        json={"primary": own["id"]},
        headers=disp,
    )
    named = client.put(url, json={"primary": own["id"]}, headers=disp)
    assert named.status_code == 409 and "441900003001002" in named.get_json()["detail"]
    # the worker's home community makes it placeable by its dispatcher
    assert client.put(url, json={"backups": [own["id"]]}, headers=disp).status_code == 200


def test_audit_api_filters_and_pages(client, admin_headers, session):
    user = new_user(client, admin_headers, username="audited", role="auditor")
    auditor = {"Authorization": f"Bearer {make_token(client, session, 'auditor')}"}
    resp = client.get(f"/api/v1/audit?object_type=user&object_id={user['id']}", headers=auditor)
    assert resp.status_code == 200
    rows = resp.get_json()
    assert [r["action"] for r in rows] == ["create"]
    assert rows[0]["actor_role"] == "admin" and rows[0]["request_id"]
    assert rows[0]["changes"]["username"] == {"from": None, "to": "audited"}
    assert "password" not in str(rows[0]["changes"]) or rows[0]["changes"].get("password") is None
    by_actor = client.get(
        f"/api/v1/audit?actor={rows[0]['actor_username']}&page_size=1", headers=auditor
    )
    assert len(by_actor.get_json()) == 1 and '"total"' in by_actor.headers["X-Pagination"]
    since = client.get("/api/v1/audit?since=2999-01-01T00:00:00%2B08:00", headers=auditor)
    assert since.get_json() == []
    bad = client.get("/api/v1/audit?since=yesterday", headers=auditor)
    assert bad.status_code == 422
    worker = {"Authorization": f"Bearer {make_token(client, session, 'grid_worker')}"}
    assert client.get("/api/v1/audit", headers=worker).status_code == 403
