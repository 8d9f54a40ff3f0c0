"""Entities through HTTP: territory, filters, masking, corrections with If-Match."""

from __future__ import annotations

import io

from sqlalchemy import text

from backend.domain.uscc import make_code
from backend.services.entity_import import import_registry
from tests.conftest import make_token
from tests.grid_fixtures import load_small_grid

PROBLEM = "application/problem+json"


def seed(client, admin_headers, session) -> dict[str, str]:
    load_small_grid(client, admin_headers)
    rows = [
        ("1", "东城阿强士多店", "东莞市东城街道东城中路1号", "5211", "113.705", "23.005"),
        ("2", "南城某电子有限公司", "东莞市南城街道鸿福路106号", "3971", "113.81", "23.05"),
        ("3", "无坐标的店", "东莞市莞城街道罗沙路1号", "8040", "", ""),
    ]
    codes = {r[0]: make_code("9", "2", "441900", f"MA{int(r[0]):07d}") for r in rows}
    csv = "统一社会信用代码,名称,住所,行业代码,法定代表人,联系电话,经度,纬度\n" + "\n".join(
        f"{codes[n]},{name},{addr},{ind},张三丰,13812345678,{lon},{lat}"
        for n, name, addr, ind, lon, lat in rows
    )
    import_registry(session, io.BytesIO(csv.encode()))
    session.commit()
    return codes


def test_list_filters_and_masking(client, admin_headers, session):
    codes = seed(client, admin_headers, session)
    everything = client.get("/api/v1/entities", headers=admin_headers).get_json()
    assert len(everything) == 3
    first = everything[0]
    assert first["phone"] == "13812345678" and first["legal_representative"] == "张三丰"
    unplaced = client.get("/api/v1/entities?unplaced=true", headers=admin_headers).get_json()
    assert [e["uscc"] for e in unplaced] == [codes["3"]]
    assert unplaced[0]["unplaced_reason"] == "address_unmatched"  # no coordinates, no library match
    assert first["unplaced_reason"] is None
    by_industry = client.get("/api/v1/entities?industry=52", headers=admin_headers).get_json()
    assert [e["uscc"] for e in by_industry] == [codes["1"]]
    by_text = client.get("/api/v1/entities?q=鸿福路", headers=admin_headers).get_json()
    assert [e["uscc"] for e in by_text] == [codes["2"]]
    by_code = client.get(f"/api/v1/entities?q={codes['2']}", headers=admin_headers).get_json()
    assert len(by_code) == 1
    in_cell = client.get("/api/v1/entities?cell=441900004002004", headers=admin_headers).get_json()
    assert [e["uscc"] for e in in_cell] == [codes["2"]]
    auditor = {"Authorization": f"Bearer {make_token(client, session, 'auditor')}"}
    masked = client.get("/api/v1/entities?cell=441900004002004", headers=auditor).get_json()[0]
    assert masked["phone"] == "138****5678" and masked["legal_representative"] == "张**"
    assert client.get("/api/v1/entities?industry=abc", headers=admin_headers).status_code == 422


def test_territory_decides_what_exists(client, admin_headers, session):
    seed(client, admin_headers, session)
    ids = dict(session.execute(text("SELECT name, id FROM market_entity")).all())
    disp = {
        "Authorization": "Bearer "
        + make_token(client, session, "community_dispatcher", community_code="441900003001")
    }
    seen = client.get("/api/v1/entities", headers=disp).get_json()
    assert [e["name"] for e in seen] == ["东城阿强士多店"]
    assert (
        client.get(f"/api/v1/entities/{ids['南城某电子有限公司']}", headers=disp).status_code == 404
    )
    assert client.get(f"/api/v1/entities/{ids['无坐标的店']}", headers=disp).status_code == 404


def test_correcting_a_location_re_places_and_is_audited(client, admin_headers, session):
    seed(client, admin_headers, session)
    entity_id = session.scalar(text("SELECT id FROM market_entity WHERE name = '无坐标的店'"))
    url = f"/api/v1/entities/{entity_id}"
    got = client.get(url, headers=admin_headers)
    etag = got.headers["ETag"]
    body = {"location": {"lon": 113.725, "lat": 23.045, "crs": "wgs84", "accuracy_m": 5}}
    assert client.patch(url, json=body, headers=admin_headers).status_code == 428
    assert (
        client.patch(url, json=body, headers={**admin_headers, "If-Match": '"99"'}).status_code
        == 412
    )
    resp = client.patch(url, json=body, headers={**admin_headers, "If-Match": etag})
    assert resp.status_code == 200, resp.get_json()
    after = resp.get_json()
    assert after["cell_code"] == "441900003001004" and after["location_source"] == "manual"
    assert after["moves"] == [{"from": None, "to": "441900003001004", "entities": 1}]
    events = session.execute(
        text(
            "SELECT action, changes FROM audit_event WHERE "
            "object_type = 'entity' AND object_id = :i ORDER BY id"
        ),
        {"i": str(entity_id)},
    ).all()
    assert [e.action for e in events] == ["create", "correct"]
    assert events[-1].changes["cell_code"] == {"from": None, "to": "441900003001004"}
    history = client.get(url, headers=admin_headers).get_json()["history"]
    assert [h["action"] for h in history] == ["correct", "create"]
    bad = client.patch(
        url,
        json={"location": {"lon": "east", "lat": 23}},
        headers={**admin_headers, "If-Match": resp.headers["ETag"]},
    )
    assert bad.status_code == 422 and bad.mimetype == PROBLEM


def test_change_feed_upserts_reports_and_places(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    new = make_code("9", "1", "441900", "MA0000042")
    changes = [
        {
            "uscc": new,
            "name": "东莞市新开电子有限公司",
            "registered_address": "东莞市南城街道",
            "lon": 113.81,
            "lat": 23.05,
            "industry_code": "3971",
            "established_on": "2026-11-20",
        },
        {"uscc": "91441900MA0000000X", "name": "坏码", "registered_address": "东莞"},
        {"uscc": new, "name": "重复"},
    ]
    resp = client.post("/api/v1/entities/changes", json={"changes": changes}, headers=admin_headers)
    assert resp.status_code == 200, resp.get_json()
    report = resp.get_json()
    assert (report["created"], report["rejected"]) == (1, 2)
    assert sorted(r["row"] for r in report["rejected_rows"]) == [2, 3]
    row = session.execute(
        text(
            "SELECT e.kind, (SELECT code FROM grid_cell WHERE id = p.cell_id) AS cell_code "
            "FROM market_entity e JOIN entity_placement p "
            "ON p.entity_id = e.id WHERE e.uscc = :u"
        ),
        {"u": new},
    ).one()
    assert row.kind == "企业" and row.cell_code == "441900004002004"
    # a change of address moves it at once, and is audited
    moved = client.post(
        "/api/v1/entities/changes",
        headers=admin_headers,
        json={
            "changes": [
                {
                    **changes[0],
                    "registered_address": "东莞市东城街道",
                    "lon": 113.705,
                    "lat": 23.005,
                }
            ]
        },
    )
    assert moved.get_json()["updated"] == 1
    assert moved.get_json()["placement"] == {"moved": 1}
    actions = session.scalars(
        text("SELECT action FROM audit_event WHERE object_type = 'entity' ORDER BY id")
    ).all()
    assert actions == ["create", "update"]
    bad = client.post("/api/v1/entities/changes", json={"changes": []}, headers=admin_headers)
    assert bad.status_code == 422 and bad.mimetype == PROBLEM
    worker = {"Authorization": f"Bearer {make_token(client, session, 'grid_worker')}"}
    assert (
        client.post(
            "/api/v1/entities/changes", json={"changes": changes}, headers=worker
        ).status_code
        == 403
    )
