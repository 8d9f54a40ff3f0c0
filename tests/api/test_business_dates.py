"""Business dates are Beijing dates (docs/dates.md), whatever the server's time zone: with the
process and the database session in UTC and the clock at 01:00 Beijing time (17:00 UTC the
day before), a task made then is due 10 working days from the Beijing date, and an item due
"yesterday in Beijing" is overdue while one due "today in Beijing" is not — in the dispatch
queue, the task and referral lists, single items, the phone's near-me list, escalation, the
written notice and the referral figures. A submitted task is not overdue anywhere, nor carded.
The zone is one setting, GRIDPATROL_BUSINESS_TZ."""

from __future__ import annotations

import os
import time
import uuid
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from backend.app import create_app
from backend.config import Settings
from backend.domain.uscc import make_code
from backend.services import audit, clock, escalation
from backend.services import calendar as workcal
from backend.services import overdue as late_rule
from tests.api.test_referrals import work_task
from tests.conftest import make_token
from tests.grid_fixtures import load_small_grid

MY_CELL = "441900003001001"
COMMUNITY = "441900003001"
SHOP = (113.705, 23.005)  # CGCS2000, inside MY_CELL
# Tuesday 3 March 2026, 01:00 in Beijing = Monday 2 March, 17:00 UTC (no holiday near)
AT_1AM_BEIJING = datetime(2026, 3, 3, 1, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
BEIJING_TODAY = date(2026, 3, 3)
BEIJING_YESTERDAY = UTC_TODAY = date(2026, 3, 2)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def utc_server_at_1am_beijing(connection):
    """The process (TZ) and the database session in UTC, the business zone Asia/Shanghai and
    the clock stopped at 01:00 Beijing time; all restored afterwards."""
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    connection.execute(text("SET TIME ZONE 'UTC'"))  # reverted with the test's transaction
    try:
        with clock.zone_set_to("Asia/Shanghai"), clock.frozen(AT_1AM_BEIJING):
            yield
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


@pytest.fixture()
def world(utc_server_at_1am_beijing, client, admin_headers, session):
    """A cell with its worker and community dispatcher, and a registration that arrived on
    the feed at 01:00 Beijing time (its first inspection: address_check, license_display)."""
    assert session.scalar(text("SHOW TimeZone")) == "UTC"
    assert time.localtime().tm_gmtoff == 0
    load_small_grid(client, admin_headers)
    worker = bearer(make_token(client, session, "grid_worker"))
    worker_id = client.get("/api/v1/auth/me", headers=worker).get_json()["id"]
    resp = client.put(
        f"/api/v1/grid/cells/{MY_CELL}/workers", json={"primary": worker_id}, headers=admin_headers
    )
    assert resp.status_code == 200, resp.get_json()
    feed = client.post(
        "/api/v1/entities/changes",
        json={
            "changes": [
                {
                    "uscc": make_code("9", "2", "441900", "MA0000313"),
                    "name": "东莞市东城凌晨便利店",
                    "registered_address": "东莞市东城街道东城中路13号",
                    "established_on": "2026-02-27",
                    "lon": SHOP[0],
                    "lat": SHOP[1],
                }
            ],
            "crs": "cgcs2000",
        },
        headers=admin_headers,
    )
    assert feed.status_code == 200, feed.get_json()
    assert feed.get_json()["tasks"]["new_registration"] == {
        "address_check": 1,
        "license_display": 1,
    }
    first = {
        r.type: r
        for r in session.execute(
            text(
                "SELECT t.id, t.type, t.entity_id FROM patrol_task t JOIN market_entity e "
                "ON e.id = t.entity_id WHERE e.name = '东莞市东城凌晨便利店'"
            )
        )
    }
    return {
        "admin": admin_headers,
        "worker": worker,
        "worker_id": worker_id,
        "dispatcher": bearer(
            make_token(client, session, "community_dispatcher", community_code=COMMUNITY)
        ),
        "entity_id": first["address_check"].entity_id,
        "address_check": first["address_check"].id,
        "license_display": first["license_display"].id,
    }


def _task(session, world, task_type: str, status: str, due: date) -> int:
    """One more task of the world's entity in MY_CELL, in the worker's hands."""
    task_id = session.scalar(
        text(
            "INSERT INTO patrol_task (type, status, origin, entity_id, cell_code, "
            "community_code, town_code, assignee_id, due_on) VALUES (:type, :status, 'test', "
            ":e, :cell, :community, '441900003', :w, :due) RETURNING id"
        ),
        {
            "type": task_type,
            "status": status,
            "e": world["entity_id"],
            "cell": MY_CELL,
            "community": COMMUNITY,
            "w": world["worker_id"],
            "due": due,
        },
    )
    audit.record(session, "create", "task", task_id, changes={})
    return int(task_id)


def _move(session, task_id: int, status: str, due: date | None = None) -> None:
    session.execute(
        text("UPDATE patrol_task SET status = :s, due_on = COALESCE(:d, due_on) WHERE id = :id"),
        {"s": status, "d": due, "id": task_id},
    )
    audit.record(session, "test", "task", task_id, changes={})


def _referrals(session, world, specs: list[tuple[str, date, str | None]]) -> list[int]:
    """Referrals of findings of the address check, each (status, due date, created_at)."""
    sid = str(uuid.uuid4())
    session.execute(
        text(
            "INSERT INTO submission (id, task_id, worker_id, body_sha256, outcome, response) "
            "VALUES (:s, :t, :w, repeat('0', 64), '{}', '{}')"
        ),
        {"s": sid, "t": world["address_check"], "w": world["worker_id"]},
    )
    ids = []
    for status, due, created_at in specs:
        finding = session.scalar(
            text(
                "INSERT INTO finding (type, task_id, submission_id, entity_id) VALUES "
                "('license_not_displayed', :t, :s, :e) RETURNING id"
            ),
            {"s": sid, "t": world["address_check"], "e": world["entity_id"]},
        )
        rid = session.scalar(
            text(
                "INSERT INTO referral (finding_id, department_code, town_code, due_on, status, "
                "created_at) VALUES (:f, 'SAMR', '441900003', :due, :status, "
                "COALESCE(CAST(:at AS timestamptz), now())) RETURNING id"
            ),
            {"f": finding, "due": due, "status": status, "at": created_at},
        )
        audit.record(session, "create", "referral", rid, changes={})
        ids.append(int(rid))
    session.commit()
    return ids


def _ids(items) -> set[int]:
    return {i["id"] for i in items}


def test_a_task_made_at_1am_beijing_is_due_from_the_beijing_date(client, world, session):
    ten_days = workcal.deadline(session, BEIJING_TODAY, 10)
    assert ten_days.due == date(2026, 3, 17) and not ten_days.approximate
    assert workcal.deadline(session, UTC_TODAY, 10).due == date(2026, 3, 16)  # the old bug

    listed = client.get("/api/v1/tasks", headers=world["dispatcher"]).get_json()
    dues = {t["type"]: t["due_on"] for t in listed}
    assert dues == {"address_check": "2026-03-17", "license_display": "2026-03-17"}, dues
    assert not any(t["overdue"] for t in listed)
    # "today" as the calendar API answers it
    zero = client.get("/api/v1/calendar/deadline?days=0", headers=world["worker"]).get_json()
    assert zero["start"] == zero["due"] == "2026-03-03"


def test_overdue_is_judged_by_the_beijing_date(client, world, session):
    late = _task(session, world, "operation_check", "assigned", BEIJING_YESTERDAY)
    due_today = _task(session, world, "annual_report_prompt", "accepted", BEIJING_TODAY)
    submitted = _task(session, world, "license_check", "submitted", BEIJING_YESTERDAY)
    returned = world["license_display"]
    _move(session, returned, "returned", BEIJING_YESTERDAY)
    pending_late, pending_today, concluded_late = _referrals(
        session,
        world,
        [
            ("pending", BEIJING_YESTERDAY, None),
            ("accepted", BEIJING_TODAY, None),
            ("concluded", BEIJING_YESTERDAY, None),
        ],
    )
    dispatcher = world["dispatcher"]

    # the dispatch queue
    queue = client.get("/api/v1/dispatch/queue", headers=dispatcher).get_json()
    assert _ids(queue["items"]["overdue_tasks"]) == {late, returned}
    assert queue["counts"]["overdue_tasks"] == 2
    assert _ids(queue["items"]["overdue_referrals"]) == {pending_late}
    assert queue["counts"]["overdue_referrals"] == 1

    # task lists and single tasks
    listed = {t["id"]: t for t in client.get("/api/v1/tasks", headers=dispatcher).get_json()}
    flags = {i: t["overdue"] for i, t in listed.items()}
    assert flags == {
        late: True,
        returned: True,
        due_today: False,
        submitted: False,
        world["address_check"]: False,
    }
    for t in listed.values():  # the SQL rule and the Python rule agree
        due = date.fromisoformat(t["due_on"])
        assert t["overdue"] == late_rule.task_is_overdue(due, t["status"], BEIJING_TODAY)
    only_late = client.get("/api/v1/tasks?overdue=true", headers=dispatcher).get_json()
    assert _ids(only_late) == {late, returned}
    not_late = client.get("/api/v1/tasks?overdue=false", headers=dispatcher).get_json()
    assert _ids(not_late) == {due_today, submitted, world["address_check"]}
    for task_id, expected in ((late, True), (due_today, False), (submitted, False)):
        one = client.get(f"/api/v1/tasks/{task_id}", headers=dispatcher).get_json()
        assert one["overdue"] is expected, (task_id, one)
        mine = client.get(f"/api/mobile/v1/tasks/{task_id}", headers=world["worker"])
        assert mine.get_json()["overdue"] is expected

    # the phone's near-me list (a prepared statement; the date is its parameter)
    near = client.get(
        f"/api/mobile/v1/tasks?lon={SHOP[0]}&lat={SHOP[1]}&crs=cgcs2000", headers=world["worker"]
    ).get_json()
    assert {t["id"]: t["overdue"] for t in near} == {
        late: True,
        returned: True,
        due_today: False,
        world["address_check"]: False,
    }

    # referrals
    referrals = client.get("/api/v1/referrals", headers=dispatcher).get_json()
    assert {r["id"]: r["overdue"] for r in referrals} == {
        pending_late: True,
        pending_today: False,
        concluded_late: False,
    }
    late_referrals = client.get("/api/v1/referrals?overdue=true", headers=dispatcher).get_json()
    assert _ids(late_referrals) == {pending_late}
    one = client.get(f"/api/v1/referrals/{pending_late}", headers=dispatcher).get_json()
    assert one["overdue"] is True


def test_escalation_cards_exactly_the_overdue_items(client, world, session):
    late = _task(session, world, "operation_check", "in_progress", BEIJING_YESTERDAY)
    due_today = _task(session, world, "annual_report_prompt", "assigned", BEIJING_TODAY)
    submitted = _task(session, world, "license_check", "submitted", BEIJING_YESTERDAY)
    returned = world["license_display"]
    _move(session, returned, "returned", BEIJING_YESTERDAY)
    pending_late, _ = _referrals(
        session, world, [("pending", BEIJING_YESTERDAY, None), ("pending", BEIJING_TODAY, None)]
    )

    counts = escalation.escalate(session)  # today: the clock's, in Beijing
    session.commit()
    assert counts["tasks"] == {"yellow": 2} and counts["referrals"] == {"yellow": 1}
    cards = dict(
        session.execute(
            text("SELECT id, escalation FROM patrol_task WHERE id = ANY(:ids)"),
            {"ids": [late, due_today, submitted, returned]},
        ).all()
    )
    assert cards == {late: "yellow", returned: "yellow", due_today: None, submitted: None}
    queue = client.get("/api/v1/dispatch/queue", headers=world["dispatcher"]).get_json()
    assert _ids(queue["items"]["escalated_tasks"]) == _ids(queue["items"]["overdue_tasks"])
    assert _ids(queue["items"]["escalated_tasks"]) == {late, returned}
    assert _ids(queue["items"]["escalated_referrals"]) == {pending_late}

    # the worker submits the returned task: waiting for review, it is neither late nor carded
    _move(session, returned, "submitted")
    session.commit()
    queue = client.get("/api/v1/dispatch/queue", headers=world["dispatcher"]).get_json()
    assert _ids(queue["items"]["overdue_tasks"]) == {late}
    assert _ids(queue["items"]["escalated_tasks"]) == {late}
    assert escalation.escalate(session)["tasks"] == {}  # nothing changes


def test_a_written_notice_at_1am_beijing_is_dated_in_beijing(client, world, session):
    task_id = world["license_display"]
    resp = work_task(client, world["worker"], task_id, {"licence_displayed": False})
    assert resp.status_code == 201, resp.get_json()
    (finding,) = resp.get_json()["findings"]
    assert finding["notice"]["deadline"] == "2026-03-17"
    notice = session.execute(
        text("SELECT issued_on, deadline FROM written_notice WHERE finding_id = :f"),
        {"f": finding["id"]},
    ).one()
    assert (notice.issued_on, notice.deadline) == (BEIJING_TODAY, date(2026, 3, 17))
    reinspection = client.get(
        f"/api/v1/tasks/{finding['notice']['reinspection_task_id']}", headers=world["dispatcher"]
    ).get_json()
    assert reinspection["due_on"] == "2026-03-17" and reinspection["overdue"] is False
    referral = session.execute(
        text(
            "SELECT r.due_on, g.time_limit_days FROM referral r "
            "JOIN routing_rule g ON g.id = r.rule_id WHERE r.finding_id = :f"
        ),
        {"f": finding["id"]},
    ).one()
    assert referral.due_on == workcal.deadline(session, BEIJING_TODAY, referral.time_limit_days).due
    # submitted: waiting for review, not overdue
    task = client.get(f"/api/v1/tasks/{task_id}", headers=world["dispatcher"]).get_json()
    assert task["status"] == "submitted" and task["overdue"] is False


def test_referral_figures_count_days_from_beijing_midnight(client, world, session):
    # 23:30 on 2 March and 00:30 on 3 March, Beijing time
    _referrals(
        session,
        world,
        [
            ("pending", BEIJING_TODAY, "2026-03-02T15:30:00Z"),
            ("pending", BEIJING_TODAY, "2026-03-02T16:30:00Z"),
        ],
    )
    for day in ("2026-03-02", "2026-03-03"):
        resp = client.get(f"/api/v1/referrals/stats?from={day}&to={day}", headers=world["admin"])
        assert resp.status_code == 200, resp.get_json()
        assert sum(row["received"] for row in resp.get_json()["rows"]) == 1, (day, resp.json)


def test_the_business_zone_is_one_setting(client, world, session, database_url, monkeypatch):
    due_yesterday = _task(session, world, "operation_check", "assigned", BEIJING_YESTERDAY)
    session.commit()

    def overdue_and_today() -> tuple[bool, str]:
        one = client.get(f"/api/v1/tasks/{due_yesterday}", headers=world["dispatcher"])
        zero = client.get("/api/v1/calendar/deadline?days=0", headers=world["worker"])
        return one.get_json()["overdue"], zero.get_json()["start"]

    assert overdue_and_today() == (True, "2026-03-03")  # Asia/Shanghai
    monkeypatch.setenv("GRIDPATROL_BUSINESS_TZ", "UTC")
    settings = Settings.from_env(database_url=database_url, environment="test")
    assert settings.business_tz == "UTC"
    with clock.zone_set_to("Asia/Shanghai"):  # restored afterwards
        other = create_app(settings)  # the app factory sets the process's business zone
        try:
            assert clock.zone() == ZoneInfo("UTC") and clock.today() == UTC_TODAY
            # 17:00 UTC on 2 March: "yesterday in Beijing" is today in UTC, not overdue
            assert overdue_and_today() == (False, "2026-03-02")
        finally:
            other.extensions["gridpatrol.engine"].dispose()
            other.extensions["gridpatrol.read_engine"].dispose()
        with clock.zone_set_to("America/Los_Angeles"):  # 09:00 on 2 March there
            assert clock.today() == date(2026, 3, 2)
        with clock.zone_set_to("Pacific/Kiritimati"):  # UTC+14: 07:00 on 3 March
            assert clock.today() == date(2026, 3, 3)
    assert clock.zone() == ZoneInfo("Asia/Shanghai")
    assert overdue_and_today() == (True, "2026-03-03")

    # a zone that does not exist stops the app at start, naming the setting
    with pytest.raises(ValueError, match="GRIDPATROL_BUSINESS_TZ"):
        create_app(Settings.from_env(database_url=database_url, business_tz="Asia/Dongguan"))
    assert clock.zone() == ZoneInfo("Asia/Shanghai")
