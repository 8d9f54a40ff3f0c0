"""The loop closed through the API: a worker's finding is referred to the department that
issues the missing permit (a petrol station's 成品油零售经营批准证书: the commerce bureau);
that department returns it (not ours), the dispatcher re-routes it
to market supervision's town branch, which concludes; the worker's re-inspection closes it.
Also: routing explained, abnormal listing written to the entity, scope and stale versions."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import text

from backend.domain.uscc import make_code
from tests.conftest import make_token
from tests.grid_fixtures import load_small_grid

MY_CELL = "441900003001001"
TOWN = "441900003"
SHOP = (113.705, 23.005)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def world(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    worker = bearer(make_token(client, session, "grid_worker"))
    worker_id = client.get("/api/v1/auth/me", headers=worker).get_json()["id"]
    client.put(
        f"/api/v1/grid/cells/{MY_CELL}/workers", json={"primary": worker_id}, headers=admin_headers
    )
    feed = client.post(
        "/api/v1/entities/changes",
        json={
            "changes": [
                {
                    "uscc": make_code("9", "2", "441900", "MA0000077"),
                    "name": "东莞市东城星辉加油站",
                    "registered_address": "东莞市东城街道东城中路7号",
                    "industry_code": "5265",
                    "established_on": "2026-11-02",
                    "lon": SHOP[0],
                    "lat": SHOP[1],
                }
            ],
            "crs": "cgcs2000",
        },
        headers=admin_headers,
    )
    assert feed.get_json()["tasks"]["permits"] == {"license_check": 1}, feed.get_json()
    return {
        "worker": worker,
        "commerce": bearer(
            make_token(client, session, "department_officer", department_code="COMMERCE")
        ),
        "samr": bearer(
            make_token(
                client, session, "department_officer", department_code="SAMR", town_code=TOWN
            )
        ),
        "samr_other_town": bearer(
            make_token(
                client, session, "department_officer", department_code="SAMR", town_code="441900004"
            )
        ),
        "dispatcher": bearer(make_token(client, session, "town_dispatcher", town_code=TOWN)),
    }


def do_task(client, worker, task_type: str, outcome: dict) -> dict:
    tasks = client.get(
        f"/api/mobile/v1/tasks?lon={SHOP[0]}&lat={SHOP[1]}&crs=cgcs2000", headers=worker
    ).get_json()
    task = next(t for t in tasks if t["type"] == task_type)
    resp = work_task(client, worker, task["id"], outcome, accept=task["status"] == "assigned")
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def work_task(client, worker, task_id: int, outcome: dict, *, accept: bool = True) -> Any:
    """Accept (when assigned), check in at the shop and submit `outcome`: the phone's answer."""
    if accept:
        assert (
            client.post(f"/api/mobile/v1/tasks/{task_id}/accept", headers=worker).status_code == 200
        )
    checkin = client.post(
        f"/api/mobile/v1/tasks/{task_id}/check-in",
        json={"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
        headers=worker,
    )
    assert checkin.status_code == 200, checkin.get_json()
    return client.post(
        "/api/mobile/v1/submissions",
        json={
            "id": str(uuid.uuid4()),
            "task_id": task_id,
            "outcome": outcome,
            "point": {"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
        },
        headers=worker,
    )


def test_the_loop(client, world, session):
    answer = do_task(
        client,
        world["worker"],
        "license_check",
        # the permit's name, as an older phone sends it: stored as its code
        {"permits_needed": ["成品油零售经营批准证书"], "permits_shown": []},
    )
    (finding,) = answer["findings"]
    assert finding["type"] == "permit_missing" and finding["referral_id"]
    assert finding["permit_type"] == "OIL_RETAIL"
    # the written notice names the permit, not its code
    assert "未取得成品油零售经营批准证书" in finding["notice"]["text"]
    assert "OIL_RETAIL" not in finding["notice"]["text"]
    rid = finding["referral_id"]

    # routing, explained: the permit's department; market supervision would use its branch
    explained = client.post(
        "/api/v1/routing/explain", json={"finding_id": finding["id"]}, headers=world["commerce"]
    ).get_json()
    assert explained["department_code"] == "COMMERCE" and "OIL_RETAIL" in explained["why"]
    food = client.post(
        "/api/v1/routing/explain",
        json={"finding_type": "permit_missing", "permit_type": "FOOD_BUSINESS", "town_code": TOWN},
        headers=world["dispatcher"],
    ).get_json()
    assert (food["department_code"], food["branch_town_code"]) == ("SAMR", TOWN)
    nothing = client.post(
        "/api/v1/routing/explain", json={"finding_type": "odd_smell"}, headers=world["dispatcher"]
    ).get_json()
    assert nothing["department_code"] == "SAMR" and "default" in nothing["why"]

    # the commerce bureau's inbox; market supervision does not see it
    inbox = client.get("/api/v1/referrals", headers=world["commerce"]).get_json()
    assert [r["id"] for r in inbox] == [rid] and inbox[0]["status"] == "pending"
    assert client.get(f"/api/v1/referrals/{rid}", headers=world["samr"]).status_code == 404
    opened = client.get(f"/api/v1/referrals/{rid}", headers=world["commerce"])
    body = opened.get_json()
    assert body["status"] == "delivered"
    assert body["entity"]["name"] == "东莞市东城星辉加油站"
    assert body["evidence"]["outcome"]["permits_needed"] == ["OIL_RETAIL"]
    assert body["finding"]["permit_type"] == "OIL_RETAIL"

    # not ours (say, the shop only sells medical devices): back to the dispatchers
    returned = client.post(
        f"/api/v1/referrals/{rid}/return",
        json={"reason": "只经营润滑油，不零售成品油"},
        headers=world["commerce"],
    )
    assert returned.status_code == 200 and returned.get_json()["status"] == "returned"
    stale_bulk = client.post(
        "/api/v1/referrals/reroute",
        json={
            "referrals": [{"id": rid, "version": 1}],
            "department_code": "SAMR",
            "reason": "批量改派",
        },
        headers=world["dispatcher"],
    ).get_json()
    assert [r["status"] for r in stale_bulk["results"]] == [412]
    queue = client.get("/api/v1/dispatch/queue", headers=world["dispatcher"]).get_json()
    assert queue["counts"]["returned_referrals"] == 1
    misses = session.scalar(
        text("SELECT misses FROM routing_rule WHERE permit_type = 'OIL_RETAIL'")
    )
    assert misses == 1
    current = client.get(f"/api/v1/referrals/{rid}", headers=world["dispatcher"])
    no_version = client.post(
        f"/api/v1/referrals/{rid}/reroute",
        json={"department_code": "SAMR", "reason": "润滑油销售归市场监管"},
        headers=world["dispatcher"],
    )
    assert no_version.status_code == 428
    rerouted = client.post(
        f"/api/v1/referrals/{rid}/reroute",
        json={"department_code": "SAMR", "town_code": TOWN, "reason": "润滑油销售归市场监管"},
        headers={**world["dispatcher"], "If-Match": current.headers["ETag"]},
    )
    assert rerouted.status_code == 200, rerouted.get_json()
    assert (
        client.get(f"/api/v1/referrals/{rid}", headers=world["samr_other_town"]).status_code == 404
    )

    # market supervision's town branch takes it and concludes: permit issued
    samr = world["samr"]
    assert client.post(f"/api/v1/referrals/{rid}/accept", headers=samr).status_code == 200
    again = client.post(f"/api/v1/referrals/{rid}/accept", headers=samr)
    assert again.status_code == 409
    bad = client.post(
        f"/api/v1/referrals/{rid}/conclude", json={"result": "case_opened"}, headers=samr
    )
    assert bad.status_code == 422  # a case number is needed
    concluded = client.post(
        f"/api/v1/referrals/{rid}/conclude",
        json={"result": "permit_issued", "note": "已补办许可"},
        headers=samr,
    )
    assert concluded.status_code == 200 and concluded.get_json()["status"] == "concluded"
    state = client.get(f"/api/v1/referrals/{rid}", headers=samr).get_json()
    assert state["reinspection_task_id"]

    # the worker re-inspects: fixed, and the referral closes
    do_task(client, world["worker"], "reinspection", {"rectified": True})
    closed = client.get(f"/api/v1/referrals/{rid}", headers=samr).get_json()
    assert closed["status"] == "closed" and "re-inspection" in closed["status_reason"]
    events = session.scalar(
        text("SELECT count(*) FROM audit_event WHERE object_type = 'referral' AND object_id = :r"),
        {"r": str(rid)},
    )
    assert events >= 7


def test_unreachable_address_ends_in_the_abnormal_list(client, world, session):
    answer = do_task(client, world["worker"], "address_check", {"found_at_address": False})
    (finding,) = answer["findings"]
    assert finding["type"] == "address_unreachable"
    rid = finding["referral_id"]
    samr = world["samr"]
    client.get(f"/api/v1/referrals/{rid}", headers=samr)
    client.post(f"/api/v1/referrals/{rid}/accept", headers=samr)
    done = client.post(
        f"/api/v1/referrals/{rid}/conclude", json={"result": "listed_abnormal"}, headers=samr
    )
    assert done.status_code == 200
    assert client.get(f"/api/v1/referrals/{rid}", headers=samr).get_json()["status"] == "closed"
    entity = session.execute(
        text(
            "SELECT abnormal_reason, abnormal_listed_on FROM market_entity "
            "WHERE name = '东莞市东城星辉加油站'"
        )
    ).one()
    assert entity.abnormal_reason and entity.abnormal_listed_on is not None


def test_officers_see_the_photos_of_their_referrals(client, world):
    image = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image, "JPEG")
    up = client.post(
        "/api/mobile/v1/attachments",
        data={"file": (io.BytesIO(image.getvalue()), "p.jpg")},
        headers=world["worker"],
        content_type="multipart/form-data",
    ).get_json()
    tasks = client.get(
        f"/api/mobile/v1/tasks?lon={SHOP[0]}&lat={SHOP[1]}&crs=cgcs2000", headers=world["worker"]
    ).get_json()
    task = next(t for t in tasks if t["type"] == "license_display")
    client.post(f"/api/mobile/v1/tasks/{task['id']}/accept", headers=world["worker"])
    client.post(
        f"/api/mobile/v1/tasks/{task['id']}/check-in",
        json={"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
        headers=world["worker"],
    )
    answer = client.post(
        "/api/mobile/v1/submissions",
        json={
            "id": str(uuid.uuid4()),
            "task_id": task["id"],
            "outcome": {"licence_displayed": False},
            "point": {"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
            "attachment_ids": [up["id"]],
        },
        headers=world["worker"],
    ).get_json()
    rid = answer["findings"][0]["referral_id"]
    evidence = client.get(f"/api/v1/referrals/{rid}", headers=world["samr"]).get_json()
    assert evidence["evidence"]["attachment_ids"] == [up["id"]]
    photo = client.get(f"/api/v1/attachments/{up['id']}", headers=world["samr"])
    assert photo.status_code == 200 and photo.mimetype == "image/jpeg"
    assert photo.data == image.getvalue()
    cached = client.get(
        f"/api/v1/attachments/{up['id']}",
        headers={**world["samr"], "If-None-Match": photo.headers["ETag"]},
    )
    assert cached.status_code == 304
    assert (
        client.get(f"/api/v1/attachments/{up['id']}", headers=world["commerce"]).status_code == 404
    )
    assert client.get(f"/api/v1/attachments/{up['id']}", headers=world["worker"]).status_code == 200


def test_workers_see_no_referrals(client, world):
    assert client.get("/api/v1/referrals", headers=world["worker"]).status_code == 403


def test_a_restaurant_goes_to_market_supervision_and_a_hotel_to_the_police(
    client, world, admin_headers, session
):
    shops = {
        "东莞市东城好味餐厅": ("6210", "FOOD_BUSINESS"),
        "东莞市东城安居旅馆": ("6110", "SPECIAL_TRADE"),
    }
    feed = client.post(
        "/api/v1/entities/changes",
        json={
            "changes": [
                {
                    "uscc": make_code("9", "2", "441900", f"MA000010{n}"),
                    "name": name,
                    "registered_address": f"东莞市东城街道东城中路{10 + n}号",
                    "industry_code": industry,
                    "established_on": "2026-11-02",
                    "lon": SHOP[0],
                    "lat": SHOP[1],
                }
                for n, (name, (industry, _)) in enumerate(shops.items())
            ],
            "crs": "cgcs2000",
        },
        headers=admin_headers,
    )
    assert feed.get_json()["tasks"]["permits"] == {"license_check": 2}, feed.get_json()
    worker = world["worker"]
    tasks = client.get(
        f"/api/mobile/v1/tasks?lon={SHOP[0]}&lat={SHOP[1]}&crs=cgcs2000&page_size=50",
        headers=worker,
    ).get_json()
    referral_of = {}
    for name, (_, permit) in shops.items():
        task = next(
            t for t in tasks if t["type"] == "license_check" and t["entity"]["name"] == name
        )
        client.post(f"/api/mobile/v1/tasks/{task['id']}/accept", headers=worker)
        client.post(
            f"/api/mobile/v1/tasks/{task['id']}/check-in",
            json={"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
            headers=worker,
        )
        answer = client.post(
            "/api/mobile/v1/submissions",
            json={
                "id": str(uuid.uuid4()),
                "task_id": task["id"],
                "outcome": {"permits_needed": [permit], "permits_shown": []},
                "point": {"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
            },
            headers=worker,
        ).get_json()
        referral_of[name] = answer["findings"][0]["referral_id"]
    placed = {
        name: session.execute(
            text("SELECT department_code, town_code FROM referral WHERE id = :r"), {"r": rid}
        ).one()
        for name, rid in referral_of.items()
    }
    assert tuple(placed["东莞市东城好味餐厅"]) == ("SAMR", TOWN)  # the town's 市场监管分局
    assert tuple(placed["东莞市东城安居旅馆"]) == ("POLICE", TOWN)  # the town's 派出所

    # market supervision: rectified → a re-inspection, which closes it when it confirms
    rid = referral_of["东莞市东城好味餐厅"]
    samr = world["samr"]
    client.get(f"/api/v1/referrals/{rid}", headers=samr)
    client.post(f"/api/v1/referrals/{rid}/accept", headers=samr)
    client.post(f"/api/v1/referrals/{rid}/start", headers=samr)
    done = client.post(
        f"/api/v1/referrals/{rid}/conclude", json={"result": "rectified"}, headers=samr
    )
    assert done.status_code == 200
    task_id = client.get(f"/api/v1/referrals/{rid}", headers=samr).get_json()[
        "reinspection_task_id"
    ]
    assert (
        session.scalar(text("SELECT type FROM patrol_task WHERE id = :t"), {"t": task_id})
        == "reinspection"
    )
    reinspections = client.get(
        f"/api/mobile/v1/tasks?lon={SHOP[0]}&lat={SHOP[1]}&crs=cgcs2000&page_size=50",
        headers=worker,
    ).get_json()
    task = next(t for t in reinspections if t["id"] == task_id)
    client.post(f"/api/mobile/v1/tasks/{task['id']}/accept", headers=worker)
    client.post(
        f"/api/mobile/v1/tasks/{task['id']}/check-in",
        json={"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
        headers=worker,
    )
    client.post(
        "/api/mobile/v1/submissions",
        json={
            "id": str(uuid.uuid4()),
            "task_id": task["id"],
            "outcome": {"rectified": True},
            "point": {"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
        },
        headers=worker,
    )
    assert client.get(f"/api/v1/referrals/{rid}", headers=samr).get_json()["status"] == "closed"

    # the figures
    stats = client.get(
        "/api/v1/referrals/stats?from=2026-01-01&to=2030-12-31&by=department",
        headers=admin_headers,
    ).get_json()
    by_department = {r["department_code"]: r for r in stats["rows"]}
    assert by_department["SAMR"]["received"] == 1 and by_department["SAMR"]["feedback_rate"] == 1
    assert (
        by_department["POLICE"]["received"] == 1 and by_department["POLICE"]["with_feedback"] == 0
    )


def _seeded_rules() -> list[dict[str, str]]:
    import csv
    from importlib.resources import files

    text_ = (files("backend") / "data" / "routing_rules.csv").read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text_)))


@pytest.mark.parametrize("rule", _seeded_rules(), ids=lambda r: r["note"])
def test_explain_answers_for_every_seeded_rule(client, admin_headers, session, rule):
    body = {"finding_type": rule["finding_type"] if rule["finding_type"] != "*" else "odd_finding"}
    if rule["permit_type"]:
        body["permit_type"] = rule["permit_type"]
    if rule["industry_prefix"]:
        body["industry_code"] = rule["industry_prefix"].ljust(4, "0")
    body["town_code"] = TOWN
    answer = client.post("/api/v1/routing/explain", json=body, headers=admin_headers).get_json()
    expected = session.scalar(
        text(
            "SELECT id FROM routing_rule WHERE finding_type = :f "
            "AND permit_type IS NOT DISTINCT FROM :p AND industry_prefix IS NOT DISTINCT FROM :i"
        ),
        {
            "f": rule["finding_type"],
            "p": rule["permit_type"] or None,
            "i": rule["industry_prefix"] or None,
        },
    )
    assert answer["rule"]["id"] == expected, answer
    assert answer["department_code"] == rule["department"]
    branches = session.scalar(
        text("SELECT town_branches FROM department WHERE code = :d"), {"d": rule["department"]}
    )
    assert answer["branch_town_code"] == (TOWN if branches else None)
