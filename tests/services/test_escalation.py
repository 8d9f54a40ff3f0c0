"""督办: yellow and red cards for overdue tasks and referrals, once; the supervising level sees
them in its queue, and the department gets an outbox event."""

from __future__ import annotations

import io
from datetime import date, timedelta

from sqlalchemy import text

from backend.domain.uscc import make_code
from backend.services import audit, dispatch, escalation, task_rules
from backend.services.auth import Principal
from backend.services.entity_import import import_registry
from tests.grid_fixtures import load_small_grid

TODAY = date(2026, 11, 23)  # a Monday


def test_cards(client, admin_headers, session):
    load_small_grid(client, admin_headers)
    csv = "统一社会信用代码,名称,住所,经度,纬度,成立日期\n" + "".join(
        f"{make_code('9', '2', '441900', f'EC{i:07d}')},店{i},东莞市东城街道路{i}号,"
        f"113.705,23.005,2026-11-01\n"
        for i in range(3)
    )
    import_registry(session, io.BytesIO(csv.encode()))
    task_rules.first_inspection(session, since=date(2026, 10, 1))
    ids = session.scalars(
        text("SELECT id FROM patrol_task WHERE type = 'address_check' ORDER BY id")
    ).all()
    dues = {ids[0]: TODAY - timedelta(days=1), ids[1]: TODAY - timedelta(days=30)}
    for task_id, due in dues.items():
        audit.record(session, "postpone", "task", task_id, changes={})
        session.execute(
            text("UPDATE patrol_task SET due_on = :d WHERE id = :t"), {"d": due, "t": task_id}
        )
    session.execute(
        text(
            "INSERT INTO submission (id, task_id, worker_id, body_sha256, outcome, response) "
            "SELECT '00000000-0000-4000-8000-0000000000e5', :t, u.id, repeat('0', 64), '{}', "
            "'{}' FROM app_user u ORDER BY u.id LIMIT 1"
        ),
        {"t": ids[2]},
    )
    finding = session.scalar(
        text(
            "INSERT INTO finding (type, task_id, submission_id) VALUES ('sign_mismatch', :t, "
            "'00000000-0000-4000-8000-0000000000e5') RETURNING id"
        ),
        {"t": ids[2]},
    )
    referral = session.scalar(
        text(
            "INSERT INTO referral (finding_id, department_code, town_code, due_on) "
            "VALUES (:f, 'SAMR', '441900003', :d) RETURNING id"
        ),
        {"f": finding, "d": TODAY - timedelta(days=20)},
    )
    audit.record(session, "create", "referral", referral, changes={})

    counts = escalation.escalate(session, today=TODAY)
    assert counts["tasks"] == {"yellow": 1, "red": 1}
    assert counts["referrals"] == {"red": 1}
    # five working days before Monday 2026-11-23 is Monday 2026-11-16
    assert counts["red_cutoff"] == "2026-11-16"
    event = session.execute(
        text("SELECT event_type, status FROM outbox_event WHERE payload->>'referral_id' = :r"),
        {"r": str(referral)},
    ).one()
    assert event.event_type == "referral.escalated"
    again = escalation.escalate(session, today=TODAY)
    assert again["tasks"] == {} and again["referrals"] == {}

    city = Principal(1, "city", "city_dispatcher")
    town = Principal(2, "t", "town_dispatcher", town_code="441900003")
    up = dispatch.queue(session, city)
    assert up["counts"]["escalated_tasks"] == 1  # only the red one goes up to the city
    assert up["counts"]["escalated_referrals"] == 1
    mine = dispatch.queue(session, town)
    assert mine["counts"]["escalated_tasks"] == 2
    assert mine["counts"]["overdue_tasks"] >= 1  # the queue counts against the real today
