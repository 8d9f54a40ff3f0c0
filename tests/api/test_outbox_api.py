"""The outbox for admins (and auditors, read-only): list with filters, replay dead letters;
the departments' webhook secrets never appear."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from backend.services import audit, outbox
from tests.conftest import make_token

SECRET = "very-secret-webhook-key-0123456789"
PROBLEM = "application/problem+json"


@pytest.fixture()
def events(session) -> dict[str, Any]:
    session.execute(
        text(
            "INSERT INTO department (code, name, webhook_url, webhook_secret) "
            "VALUES ('TAPIHOOK', '接口测试部门', 'https://dept.example/hook', :s)"
        ),
        {"s": SECRET},
    )
    audit.record(session, "create", "department", "TAPIHOOK", changes={})
    ids = [
        outbox.emit(session, "TAPIHOOK", "referral.created", {"referral_id": i, "名称": "店"})
        for i in range(3)
    ]
    dead, pending, delivered = ids
    session.execute(
        text(
            "UPDATE outbox_event SET status = 'dead', attempts = 10, last_error = 'HTTP 500' "
            "WHERE event_id = :e"
        ),
        {"e": str(dead)},
    )
    session.execute(
        text(
            "UPDATE outbox_event SET status = 'delivered', attempts = 1, delivered_at = now() "
            "WHERE event_id = :e"
        ),
        {"e": str(delivered)},
    )
    session.commit()
    return {"dead": dead, "pending": pending, "delivered": delivered}


def headers_for(client, session, role: str, **scope: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(client, session, role, **scope)}"}


def test_list_with_filters_and_never_the_secret(client, admin_headers, events):
    resp = client.get("/api/v1/outbox?department=TAPIHOOK", headers=admin_headers)
    assert resp.status_code == 200, resp.get_json()
    listed = resp.get_json()
    assert {e["event_id"] for e in listed} == {str(i) for i in events.values()}
    assert SECRET not in resp.get_data(as_text=True)
    assert "webhook_secret" not in resp.get_data(as_text=True)
    one = next(e for e in listed if e["event_id"] == str(events["dead"]))
    assert one["status"] == "dead" and one["attempts"] == 10 and one["last_error"] == "HTTP 500"
    assert one["payload"] == {"referral_id": 0, "名称": "店"}
    assert one["department"] == "TAPIHOOK" and one["event_type"] == "referral.created"
    assert '"X-Total-Count"' not in resp.headers  # pagination is in X-Pagination
    assert '"total": 3' in resp.headers["X-Pagination"]

    dead = client.get("/api/v1/outbox?status=dead&department=TAPIHOOK", headers=admin_headers)
    assert [e["event_id"] for e in dead.get_json()] == [str(events["dead"])]
    paged = client.get(
        "/api/v1/outbox?department=TAPIHOOK&page=2&page_size=2", headers=admin_headers
    )
    assert len(paged.get_json()) == 1
    none = client.get("/api/v1/outbox?department=TNOSUCH", headers=admin_headers)
    assert none.status_code == 200 and none.get_json() == []


def test_replay_dead_events(client, admin_headers, events, session):
    unknown = uuid.uuid4()
    resp = client.post(
        "/api/v1/outbox/replay",
        json={
            "event_ids": [
                str(events["dead"]),
                str(events["pending"]),
                str(events["delivered"]),
                str(unknown),
                str(events["dead"]),  # twice: counted once
            ]
        },
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["replayed"] == 1
    assert body["replayed_ids"] == [str(events["dead"])]
    assert body["not_replayed"] == [str(events["pending"]), str(events["delivered"]), str(unknown)]
    r = session.execute(
        text("SELECT status, attempts, last_error FROM outbox_event WHERE event_id = :e"),
        {"e": str(events["dead"])},
    ).one()
    assert tuple(r) == ("pending", 0, None)
    audited = session.execute(
        text(
            "SELECT actor_role, changes FROM audit_event WHERE action = 'replay' "
            "AND object_type = 'outbox_event' AND object_id = :e"
        ),
        {"e": str(events["dead"])},
    ).all()
    assert len(audited) == 1 and audited[0].actor_role == "admin"
    assert audited[0].changes["last_error"] == {"from": "HTTP 500", "to": None}
    # again: it is not dead any more
    again = client.post(
        "/api/v1/outbox/replay", json={"event_ids": [str(events["dead"])]}, headers=admin_headers
    ).get_json()
    assert again == {
        "replayed": 0,
        "replayed_ids": [],
        "not_replayed": [str(events["dead"])],
    }


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"event_ids": []},
        {"event_ids": "x"},
        {"event_ids": ["not-a-uuid"]},
        {"event_ids": [None]},
        {"event_ids": [str(uuid.uuid4()) for _ in range(1001)]},
        {"event_ids": [str(uuid.uuid4())], "extra": 1},
    ],
)
def test_replay_rejects_bad_bodies(client, admin_headers, body):
    resp = client.post("/api/v1/outbox/replay", json=body, headers=admin_headers)
    assert resp.status_code == 422, resp.get_json()
    assert resp.mimetype == PROBLEM
    assert resp.get_json()["errors"]


def test_bad_filters_are_422(client, admin_headers):
    for query in ("status=lost", "department=" + "X" * 40, "page_size=100000"):
        resp = client.get(f"/api/v1/outbox?{query}", headers=admin_headers)
        assert resp.status_code == 422, (query, resp.get_json())
        assert resp.mimetype == PROBLEM


def test_who_may(client, session, events):
    auditor = headers_for(client, session, "auditor")
    assert client.get("/api/v1/outbox", headers=auditor).status_code == 200
    replay = {"event_ids": [str(events["dead"])]}
    assert client.post("/api/v1/outbox/replay", json=replay, headers=auditor).status_code == 403
    for role, scope in (
        ("city_dispatcher", {}),
        ("grid_worker", {}),
        ("department_officer", {"department_code": "SAMR"}),
    ):
        h = headers_for(client, session, role, **scope)
        assert client.get("/api/v1/outbox", headers=h).status_code == 403, role
        assert client.post("/api/v1/outbox/replay", json=replay, headers=h).status_code == 403
    assert client.get("/api/v1/outbox").status_code == 401
    assert client.post("/api/v1/outbox/replay", json=replay).status_code == 401
    status = session.scalar(
        text("SELECT status FROM outbox_event WHERE event_id = :e"), {"e": str(events["dead"])}
    )
    assert status == "dead"


def test_only_admins_see_why_the_webhook_policy_refused(client, session, admin_headers, events):
    detail = "127.0.0.1 is a loopback address and it is not in GRIDPATROL_WEBHOOK_ALLOW"
    session.execute(
        text(
            "UPDATE outbox_event SET last_error = 'refused by policy', policy_detail = :d "
            "WHERE event_id = :e"
        ),
        {"d": detail, "e": str(events["dead"])},
    )
    session.commit()
    url = "/api/v1/outbox?status=dead&department=TAPIHOOK"
    (admin_view,) = client.get(url, headers=admin_headers).get_json()
    assert admin_view["last_error"] == "refused by policy"
    assert admin_view["policy_detail"] == detail
    auditor = client.get(url, headers=headers_for(client, session, "auditor"))
    (auditor_view,) = auditor.get_json()
    assert auditor_view["last_error"] == "refused by policy"
    assert "policy_detail" not in auditor_view
    assert "127.0.0.1" not in auditor.get_data(as_text=True)
