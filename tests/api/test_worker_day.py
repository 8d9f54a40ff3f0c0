"""A grid worker's day through the API, end to end: a registration arrives on the feed, its
first inspection reaches the cell's worker, who lists tasks near where they stand (GCJ-02),
accepts, checks in (outside the geofence, then with a reason, then inside), uploads a photo,
submits (and re-sends after a lost answer), syncs a batch with one bad item; the dispatcher
reviews."""

from __future__ import annotations

import gzip
import io
import json
import re
import uuid

import pytest
from PIL import Image
from sqlalchemy import text

from backend.domain.uscc import make_code
from geo import crs as geocrs
from mobile_api.tasks import NearTaskSchema
from tests.conftest import make_token
from tests.grid_fixtures import load_small_grid

MY_CELL = "441900003001001"
SHOP = (113.705, 23.005)  # CGCS2000, inside MY_CELL
PROBLEM = "application/problem+json"


def jpeg(seed: int = 0) -> bytes:
    image = Image.new("RGB", (64, 48), (seed % 256, 80, 160))
    buf = io.BytesIO()
    image.save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture()
def day(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    worker = make_token(client, session, "grid_worker")
    w_headers = {"Authorization": f"Bearer {worker}"}
    worker_id = client.get("/api/v1/auth/me", headers=w_headers).get_json()["id"]
    resp = client.put(
        f"/api/v1/grid/cells/{MY_CELL}/workers", json={"primary": worker_id}, headers=admin_headers
    )
    assert resp.status_code == 200
    dispatcher = make_token(client, session, "community_dispatcher", community_code="441900003001")
    uscc = make_code("9", "2", "441900", "MA0000042")
    feed = client.post(
        "/api/v1/entities/changes",
        json={
            "changes": [
                {
                    "uscc": uscc,
                    "name": "东莞市东城阿明士多店",
                    "registered_address": "东莞市东城街道东城中路1号",
                    "established_on": "2026-11-20",
                    "lon": SHOP[0],
                    "lat": SHOP[1],
                }
            ],
            "crs": "cgcs2000",
        },
        headers=admin_headers,
    )
    assert feed.status_code == 200, feed.get_json()
    made = feed.get_json()["tasks"]["new_registration"]
    assert made == {"address_check": 1, "license_display": 1}
    return {
        "worker": w_headers,
        "worker_id": worker_id,
        "dispatcher": {"Authorization": f"Bearer {dispatcher}"},
    }


def near(client, headers, lon, lat, **extra):
    return client.get(
        f"/api/mobile/v1/tasks?lon={lon}&lat={lat}&crs=gcj02", headers={**headers, **extra}
    )


def test_a_workers_day(client, day, session):
    w = day["worker"]
    # near-me, from a GCJ-02 position ~100 m east of the shop
    glon, glat = geocrs.from_cgcs2000("gcj02", SHOP[0] + 0.001, SHOP[1])
    resp = near(client, w, glon, glat)
    assert resp.status_code == 200, resp.get_json()
    listed = resp.get_json()
    assert [t["type"] for t in listed] == ["address_check", "license_display"]
    assert all(90 < t["distance_m"] < 115 for t in listed), listed
    assert listed[0]["entity"]["name"] == "东莞市东城阿明士多店"
    assert listed[0]["overdue"] is False and listed[0]["status"] == "assigned"
    assert set(listed[0]) == {
        *NearTaskSchema().fields,
    }, set(listed[0]) ^ set(NearTaskSchema().fields)
    assert len(resp.headers.getlist("X-Pagination")) == 1
    assert json.loads(resp.headers["X-Pagination"])["total"] == 2
    etag = resp.headers["ETag"]
    again = near(client, w, glon, glat, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    task_id = listed[0]["id"]

    # accept; a second accept is a conflict
    assert client.post(f"/api/mobile/v1/tasks/{task_id}/accept", headers=w).status_code == 200
    second = client.post(f"/api/mobile/v1/tasks/{task_id}/accept", headers=w)
    assert second.status_code == 409 and second.mimetype == PROBLEM
    assert "accepted" in second.get_json()["detail"]

    # check in 1 km away: refused with the distance; with a reason: flagged
    flon, flat = geocrs.from_cgcs2000("gcj02", SHOP[0] + 0.01, SHOP[1])
    far = client.post(
        f"/api/mobile/v1/tasks/{task_id}/check-in",
        json={"lon": flon, "lat": flat, "accuracy_m": 10},
        headers=w,
    )
    assert far.status_code == 422 and far.mimetype == PROBLEM
    assert re.search(r"You are 10[12]\d m from the place", far.get_json()["detail"])
    flagged = client.post(
        f"/api/mobile/v1/tasks/{task_id}/check-in",
        json={"lon": flon, "lat": flat, "accuracy_m": 10, "reason": "门店在市场内部，定位漂移"},
        headers=w,
    )
    assert flagged.status_code == 200 and flagged.get_json()["flagged"] is True
    slon, slat = geocrs.from_cgcs2000("gcj02", *SHOP)
    inside = client.post(
        f"/api/mobile/v1/tasks/{task_id}/check-in",
        json={
            "lon": slon,
            "lat": slat,
            "accuracy_m": 8,
            "device_time": "2026-11-22T09:30:00+08:00",
        },
        headers=w,
    )
    assert inside.status_code == 200, inside.get_json()
    assert inside.get_json()["distance_m"] < 5 and not inside.get_json()["flagged"]

    # a photo; the same bytes again are the same attachment
    photo = jpeg()
    up = client.post(
        "/api/mobile/v1/attachments",
        data={"file": (io.BytesIO(photo), "x.jpg")},
        headers=w,
        content_type="multipart/form-data",
    )
    assert up.status_code == 201, up.get_json()
    again = client.post(
        "/api/mobile/v1/attachments",
        data={"file": (io.BytesIO(photo), "other-name.jpg")},
        headers=w,
        content_type="multipart/form-data",
    )
    assert again.status_code == 200 and again.get_json()["id"] == up.get_json()["id"]
    fake = client.post(
        "/api/mobile/v1/attachments",
        data={"file": (io.BytesIO(b"\xff\xd8\xff\xe0 not really a jpeg"), "fake.jpg")},
        headers=w,
        content_type="multipart/form-data",
    )
    assert fake.status_code == 422 and fake.mimetype == PROBLEM

    # the submission; the answer is "lost" and the phone sends it again
    submission = {
        "id": str(uuid.uuid4()),
        "task_id": task_id,
        "outcome": {"found_at_address": True, "operating": True, "sign_matches_name": False},
        "point": {"lon": slon, "lat": slat, "accuracy_m": 8},
        "captured_at": "2026-11-22T09:41:00+08:00",
        "attachment_ids": [up.get_json()["id"]],
    }
    first = client.post("/api/mobile/v1/submissions", json=submission, headers=w)
    assert first.status_code == 201, first.get_json()
    answer = first.get_json()
    assert answer["task"]["status"] == "submitted"
    assert [f["type"] for f in answer["findings"]] == ["sign_mismatch"]
    notice = answer["findings"][0]["notice"]
    assert notice["reinspection_task_id"] and notice["deadline"]
    replay = client.post("/api/mobile/v1/submissions", json=submission, headers=w)
    assert replay.status_code == 200 and replay.get_json() == answer
    changed = {**submission, "outcome": {"found_at_address": False}}
    clash = client.post("/api/mobile/v1/submissions", json=changed, headers=w)
    assert clash.status_code == 409 and clash.mimetype == PROBLEM
    assert session.scalar(text("SELECT count(*) FROM submission")) == 1
    assert session.scalar(text("SELECT count(*) FROM finding")) == 1

    # the other task through /sync, with a bad item beside it
    other = listed[1]["id"]
    assert client.post(f"/api/mobile/v1/tasks/{other}/accept", headers=w).status_code == 200
    client.post(
        f"/api/mobile/v1/tasks/{other}/check-in", json={"lon": slon, "lat": slat}, headers=w
    )
    good = {
        "id": str(uuid.uuid4()),
        "task_id": other,
        "outcome": {"licence_displayed": True},
        "point": {"lon": slon, "lat": slat},
    }
    bad_outcome = {**good, "id": str(uuid.uuid4()), "outcome": {"licence_displayed": "maybe"}}
    not_mine = {**good, "id": str(uuid.uuid4()), "task_id": 999_999}
    synced = client.post(
        "/api/mobile/v1/sync",
        json={"submissions": [bad_outcome, good, not_mine, "garbage", submission]},
        headers=w,
    )
    assert synced.status_code == 200, synced.get_json()
    statuses = [r["status"] for r in synced.get_json()["results"]]
    assert statuses == [422, 201, 404, 422, 200]
    assert session.scalar(text("SELECT count(*) FROM submission")) == 2

    # the dispatcher sees the submitted task and closes it with If-Match
    d = day["dispatcher"]
    seen = client.get(f"/api/v1/tasks/{task_id}", headers=d)
    assert seen.status_code == 200 and seen.get_json()["status"] == "submitted"
    assert seen.get_json()["checkin_distance_m"] < 5
    stale = client.post(f"/api/v1/tasks/{task_id}/close", headers={**d, "If-Match": '"1"'})
    assert stale.status_code == 412
    closed = client.post(
        f"/api/v1/tasks/{task_id}/close", headers={**d, "If-Match": seen.headers["ETag"]}
    )
    assert closed.status_code == 200 and closed.get_json()["status"] == "closed"
    # the re-inspection waits in the worker's list
    left = near(client, w, glon, glat).get_json()
    assert [t["type"] for t in left] == ["reinspection"]
    # every task change has its audit event
    events = session.scalar(text("SELECT count(*) FROM audit_event WHERE object_type = 'task'"))
    assert events >= 12


def test_decline_returns_to_the_queue_and_the_dispatcher_reassigns(client, day, session):
    w, d = day["worker"], day["dispatcher"]
    task = near(client, w, 113.7, 23.0).get_json()[0]
    no_reason = client.post(f"/api/mobile/v1/tasks/{task['id']}/decline", json={}, headers=w)
    assert no_reason.status_code == 422
    declined = client.post(
        f"/api/mobile/v1/tasks/{task['id']}/decline", json={"reason": "不在我的网格"}, headers=w
    )
    assert declined.status_code == 200 and declined.get_json()["status"] == "declined"
    queue = client.get("/api/v1/tasks?queued=true", headers=d).get_json()
    assert [t["id"] for t in queue] == [task["id"]]
    current = client.get(f"/api/v1/tasks/{task['id']}", headers=d)
    no_match = client.post(
        f"/api/v1/tasks/{task['id']}/assign", json={"assignee_id": day["worker_id"]}, headers=d
    )
    assert no_match.status_code == 428
    assigned = client.post(
        f"/api/v1/tasks/{task['id']}/assign",
        json={"cell_code": MY_CELL},
        headers={**d, "If-Match": current.headers["ETag"]},
    )
    assert assigned.status_code == 200, assigned.get_json()
    assert assigned.get_json()["assignee_id"] == day["worker_id"]
    # bulk: one stale version, one good
    tasks = client.get("/api/v1/tasks", headers=d).get_json()
    refs = [{"id": t["id"], "version": t["version"]} for t in tasks]
    refs[0]["version"] += 5
    bulk = client.post(
        "/api/v1/tasks/assign", json={"tasks": refs, "cell_code": MY_CELL}, headers=d
    ).get_json()
    assert sorted(r["status"] for r in bulk["results"]) == [200, 412]
    # a worker cannot see a task in another's hands, nor act on it
    other = make_token(client, session, "grid_worker")
    oh = {"Authorization": f"Bearer {other}"}
    assert client.get(f"/api/mobile/v1/tasks/{task['id']}", headers=oh).status_code == 404
    assert client.post(f"/api/mobile/v1/tasks/{task['id']}/accept", headers=oh).status_code == 404


def test_submissions_refuse_bad_input(client, day):
    w = day["worker"]
    task = near(client, w, 113.7, 23.0).get_json()[0]
    client.post(f"/api/mobile/v1/tasks/{task['id']}/accept", headers=w)
    base = {
        "id": str(uuid.uuid4()),
        "task_id": task["id"],
        "outcome": {"found_at_address": True, "operating": True},
        "point": {"lon": 113.71, "lat": 23.0},
    }
    not_checked_in = client.post("/api/mobile/v1/submissions", json=base, headers=w)
    assert not_checked_in.status_code == 409
    client.post(
        f"/api/mobile/v1/tasks/{task['id']}/check-in",
        json={"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
        headers=w,
    )
    cases = [
        ({**base, "outcome": {"found_at_address": True}}, 422),  # operating missing
        ({**base, "outcome": {"found_at_address": True, "operating": True, "x": 1}}, 422),
        ({**base, "attachment_ids": [123456]}, 422),
        ({**base, "id": "not-a-uuid"}, 422),
        ({**base, "point": {"lon": 500, "lat": 23}}, 422),
        ({**base, "task_id": "seven"}, 422),
    ]
    for body, status in cases:
        resp = client.post("/api/mobile/v1/submissions", json=body, headers=w)
        assert resp.status_code == status, (body, resp.get_json())
        assert resp.mimetype == PROBLEM
    garbage = client.post(
        "/api/mobile/v1/submissions",
        data=b"{not json",
        headers={**w, "Content-Type": "application/json"},
    )
    assert garbage.status_code == 400


def test_near_me_gzipped_when_accepted(client, day, admin_headers):
    """The page (≥ 1 KiB here: six tasks) is gzipped for a client that accepts it, decodes to
    the same JSON, keeps its ETag (a 304 works either way); small answers are left alone."""
    w = day["worker"]
    more = [
        {
            "uscc": make_code("9", "2", "441900", f"MA000010{k}"),
            "name": f"东莞市东城阿明士多{k}号店",
            "registered_address": f"东莞市东城街道东城中路{k + 2}号",
            "established_on": "2026-11-20",
            "lon": SHOP[0] + 0.0002 * k,
            "lat": SHOP[1],
        }
        for k in (1, 2)
    ]
    feed = client.post(
        "/api/v1/entities/changes",
        json={"changes": more, "crs": "cgcs2000"},
        headers=admin_headers,
    )
    assert feed.status_code == 200, feed.get_json()
    glon, glat = geocrs.from_cgcs2000("gcj02", SHOP[0] + 0.001, SHOP[1])
    plain = near(client, w, glon, glat)
    zipped = near(client, w, glon, glat, **{"Accept-Encoding": "gzip, deflate, br"})
    assert plain.status_code == zipped.status_code == 200
    assert len(plain.get_json()) == 6
    assert "Content-Encoding" not in plain.headers and len(plain.data) >= 1024
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert len(zipped.data) < len(plain.data) / 2
    assert json.loads(gzip.decompress(zipped.data)) == plain.get_json()
    assert zipped.headers["ETag"] == plain.headers["ETag"]
    assert zipped.headers["X-Pagination"] == plain.headers["X-Pagination"]
    again = near(
        client,
        w,
        glon,
        glat,
        **{"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]},
    )
    assert again.status_code == 304 and again.data == b""
    refused = near(client, w, glon, glat, **{"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers
    small = client.get("/api/v1/auth/me", headers={**w, "Accept-Encoding": "gzip"})
    assert small.status_code == 200 and "Content-Encoding" not in small.headers


def test_a_plain_submission_is_written_whole_in_one_statement(client, day, session):
    """A submission whose findings need no notice nor referral takes the one-statement path:
    the stored answer, the task's move and its audit event, and the findings agree."""
    from backend.services import tasks

    made = tasks.create_for_entities(
        session,
        "operation_check",
        "manual",
        "SELECT id FROM market_entity",
        due=tasks.due_in(session, 10),
    )
    session.commit()
    assert made == 1
    w = day["worker"]
    task = next(
        t for t in near(client, w, 113.7, 23.0).get_json() if t["type"] == "operation_check"
    )
    assert client.post(f"/api/mobile/v1/tasks/{task['id']}/accept", headers=w).status_code == 200
    client.post(
        f"/api/mobile/v1/tasks/{task['id']}/check-in",
        json={"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
        headers=w,
    )
    body = {
        "id": str(uuid.uuid4()),
        "task_id": task["id"],
        "outcome": {"operating": True, "matches_business_scope": False, "note": "卖烟"},
        "point": {"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
    }
    first = client.post("/api/mobile/v1/submissions", json=body, headers=w)
    assert first.status_code == 201, first.get_json()
    answer = first.get_json()
    assert answer["id"] == body["id"]
    [finding] = answer["findings"]
    assert finding["type"] == "beyond_business_scope" and "referral_id" not in finding
    row = session.execute(
        text(
            "SELECT f.type, f.task_id, f.submission_id::text AS sub, f.details, t.status, "
            "t.version, s.response FROM finding f JOIN patrol_task t ON t.id = f.task_id "
            "JOIN submission s ON s.id = f.submission_id WHERE f.id = :id"
        ),
        {"id": finding["id"]},
    ).one()
    assert (row.type, row.task_id, row.sub) == ("beyond_business_scope", task["id"], body["id"])
    assert row.details == {"note": "卖烟"}
    assert answer["task"] == {"id": task["id"], "status": "submitted", "version": row.version}
    assert row.status == "submitted" and row.response == answer
    events = session.scalar(
        text(
            "SELECT count(*) FROM audit_event WHERE object_type = 'task' AND object_id = :id "
            "AND action = 'submit' AND changes->'submission_id'->>'to' = :sub"
        ),
        {"id": str(task["id"]), "sub": body["id"]},
    )
    assert events == 1
    # the lost answer, asked again; and a second submission for the same task is refused whole
    assert client.post("/api/mobile/v1/submissions", json=body, headers=w).get_json() == answer
    again = {**body, "id": str(uuid.uuid4())}
    refused = client.post("/api/mobile/v1/submissions", json=again, headers=w)
    assert refused.status_code == 409 and refused.mimetype == PROBLEM
    left = session.execute(
        text(
            "SELECT (SELECT count(*) FROM submission WHERE task_id = :t), "
            "(SELECT count(*) FROM finding WHERE task_id = :t)"
        ),
        {"t": task["id"]},
    ).one()
    assert tuple(left) == (1, 1)
