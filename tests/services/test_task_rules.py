"""Generation rules: each makes what it should, routes it to the right worker or queue, and a
second run makes nothing new. Leads: placed, given to the cell's worker, linked when an open
lead lies within 30 m."""

from __future__ import annotations

import io
from datetime import date

import pytest
from sqlalchemy import text

from backend.domain.uscc import make_code
from backend.services import leads, task_rules
from backend.services.entity_import import import_registry
from backend.services.errors import InvalidInput
from tests.conftest import make_token
from tests.grid_fixtures import load_small_grid

MY_CELL = "441900003001001"  # (113.70, 23.00)-(113.715, 23.03)


def code(n: int) -> str:
    return make_code("9", "2", "441900", f"TR{n:07d}")


@pytest.fixture()
def town(client, admin_headers, session):
    """The small grid; MY_CELL has a primary worker and a backup."""
    load_small_grid(client, admin_headers)
    ids = []
    for _ in range(2):
        token = make_token(client, session, "grid_worker")
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        ids.append(me.get_json()["id"])
    resp = client.put(
        f"/api/v1/grid/cells/{MY_CELL}/workers",
        json={"primary": ids[0], "backups": [ids[1]]},
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.get_json()
    rows = [
        (1, "阿强超市", "东莞市东城街道东城中路1号", "5212", "113.705,23.005", "2020-01-01"),
        (2, "持证超市", "东莞市东城街道东城中路2号", "5212", "113.706,23.006", "2020-01-01"),
        (3, "电路板厂", "东莞市东城街道东城中路3号", "3982", "113.707,23.007", "2020-01-01"),
        (4, "村口小卖部", "东莞市东城街道某某村委会附近", "5213", ",", "2026-11-01"),
        (5, "新开的药店", "东莞市东城街道东城中路5号", "5251", "113.708,23.008", "2026-11-10"),
        (6, "已注销的店", "东莞市东城街道东城中路6号", "5213", "113.709,23.009", "2020-01-01"),
    ]
    lines = ["统一社会信用代码,名称,住所,行业代码,经度,纬度,成立日期,登记状态"]
    for n, name, address, industry, coords, established in rows:
        status = "注销" if n == 6 else "存续"
        lines.append(f"{code(n)},{name},{address},{industry},{coords},{established},{status}")
    report = import_registry(session, io.BytesIO(("\n".join(lines) + "\n").encode()))
    assert report.created == 6, report.as_dict()
    session.execute(
        text(
            "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
            "object_id, changes) SELECT 'test', 'system', 'licence', 'entity', id::text, '{}' "
            "FROM market_entity WHERE uscc = :u"
        ),
        {"u": code(2)},
    )
    session.execute(
        text(
            'UPDATE market_entity SET licences = \'[{"type": "食品经营许可证", '
            '"number": "JY14419000000001", "valid_to": "2099-12-31"}]\' WHERE uscc = :u'
        ),
        {"u": code(2)},
    )
    return {"workers": ids}


def tasks_of(session, **where):
    clause = " AND ".join(f"t.{k} = :{k}" for k in where) or "true"
    return session.execute(
        text(
            f"SELECT m.name, t.type, t.status, t.assignee_id, t.cell_code, t.town_code, "
            f"t.community_code, t.due_on, t.due_approximate FROM patrol_task t "
            f"JOIN market_entity m ON m.id = t.entity_id WHERE {clause} ORDER BY m.name, t.type"
        ),
        where,
    ).all()


def test_licence_checks_once(town, session):
    made = task_rules.licence_checks(session)
    assert made == {"license_check": 3}  # 阿强超市, 村口小卖部, 新开的药店; not the licensed one
    rows = tasks_of(session, type="license_check")
    assert {r.name for r in rows} == {"阿强超市", "村口小卖部", "新开的药店"}
    assert task_rules.licence_checks(session) == {"license_check": 0}
    # spread over the cell's two workers, the primary first
    in_cell = [r for r in rows if r.cell_code == MY_CELL]
    assert {r.assignee_id for r in in_cell} == set(town["workers"])


def test_unmatched_address_goes_to_the_town_queue(town, session):
    assert task_rules.unmatched_addresses(session) == {"address_check": 1}
    (row,) = tasks_of(session, type="address_check")
    assert (row.name, row.status, row.assignee_id, row.cell_code, row.town_code) == (
        "村口小卖部",
        "open",
        None,
        None,
        "441900003",
    )
    assert task_rules.unmatched_addresses(session) == {"address_check": 0}


def test_first_inspection_of_new_registrations(town, session):
    made = task_rules.first_inspection(session, since=date(2026, 11, 1))
    assert made == {"address_check": 2, "license_display": 2}
    rows = tasks_of(session, origin="new_registration")
    assert {r.name for r in rows} == {"村口小卖部", "新开的药店"}
    # 10 working days from the calendar (seeded from chinese-calendar for 2026)
    assert all(not r.due_approximate for r in rows)
    assert task_rules.first_inspection(session, since=date(2026, 11, 1)) == {
        "address_check": 0,
        "license_display": 0,
    }


def test_annual_report_campaign(town, session):
    session.execute(
        text(
            "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
            "object_id, changes) SELECT 'test', 'system', 'report', 'entity', id::text, '{}' "
            "FROM market_entity WHERE uscc = :u"
        ),
        {"u": code(1)},
    )
    session.execute(
        text("UPDATE market_entity SET annual_report_years = '{2025}' WHERE uscc = :u"),
        {"u": code(1)},
    )
    made = task_rules.annual_report_campaign(session, 2025, start=date(2026, 3, 1))
    # active, established by the end of 2025, not filed: 持证超市 and 电路板厂
    assert made == {"annual_report_prompt": 2}
    rows = tasks_of(session, type="annual_report_prompt")
    assert {r.name for r in rows} == {"持证超市", "电路板厂"}
    assert all(r.due_on == date(2026, 6, 30) for r in rows)
    again = task_rules.annual_report_campaign(session, 2025, start=date(2026, 3, 2))
    assert again == {"annual_report_prompt": 0}
    with pytest.raises(InvalidInput, match="2026-06-30"):
        task_rules.annual_report_campaign(session, 2025, start=date(2026, 11, 22))


def test_leads_are_placed_and_deduplicated(town, session):
    first = leads.report_lead(
        session, town["workers"][0], lon=113.71, lat=23.01, crs="cgcs2000", description="无照餐馆"
    )
    assert first["status"] == "open" and first["cell_code"] == MY_CELL and first["task_id"]
    assignee = session.scalar(
        text("SELECT assignee_id FROM patrol_task WHERE id = :t"), {"t": first["task_id"]}
    )
    assert assignee in town["workers"]
    near = leads.report_lead(
        session,
        town["workers"][1],
        lon=113.7101,
        lat=23.0101,  # ~15 m away
        crs="cgcs2000",
        description="同一家无照餐馆",
    )
    assert near["duplicate_of"] == first["id"] and near["task_id"] is None
    far = leads.report_lead(
        session, None, lon=113.712, lat=23.01, crs="cgcs2000", description="另一家"
    )
    assert far["duplicate_of"] is None and far["task_id"]
    with pytest.raises(InvalidInput, match="outside the city"):
        leads.report_lead(session, None, lon=114.5, lat=23.3, crs="cgcs2000", description="x")
    assert (
        session.scalar(text("SELECT count(*) FROM patrol_task WHERE type = 'unlicensed_lead'")) == 2
    )
