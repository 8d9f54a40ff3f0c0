"""The near-me page (`tasks.near_me`, SQL function `gp_near_me`): only the worker's tasks in
hand, nearest first by geodesic metres (checked against pyproj's ellipsoid), tasks without a
point last by due date, pages that add up to the whole list, and items shaped as documented."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from pyproj import Geod
from sqlalchemy import text

from backend.domain.uscc import make_code
from backend.services import tasks
from backend.services.users import create_user
from mobile_api.tasks import NearTaskSchema

HERE = (113.7500, 23.0200)  # CGCS2000
GEOD = Geod(ellps="GRS80")  # CGCS2000's ellipsoid differs from GRS80 by < 0.1 mm in b
LIVE = ("assigned", "accepted", "in_progress", "returned")


def _entity(session, n: int, point: tuple[float, float] | None) -> int:
    return session.scalar(
        text(
            "INSERT INTO market_entity (uscc, name, registered_address, geom, location_source) "
            "VALUES (:u, :name, :addr, CASE WHEN CAST(:x AS float8) IS NULL THEN NULL "
            "ELSE ST_SetSRID(ST_MakePoint(:x, :y), 4490) END, "
            "CASE WHEN CAST(:x AS float8) IS NULL THEN 'unmatched' ELSE 'manual' END) "
            "RETURNING id"
        ),
        {
            "u": make_code("9", "2", "441900", f"NM{n:07d}"),
            "name": f"近处商户{n}",
            "addr": f"东莞市东城街道测试路{n}号",
            "x": point[0] if point else None,
            "y": point[1] if point else None,
        },
    )


def _task(session, worker: int | None, status: str, due: date, *, entity=None, lead=None):
    return session.scalar(
        text(
            "INSERT INTO patrol_task (type, status, origin, entity_id, lead_id, assignee_id, "
            "due_on) VALUES (:type, :status, 'test', :e, :l, :w, :due) RETURNING id"
        ),
        {
            "type": "unlicensed_lead" if lead else "address_check",
            "status": status,
            "e": entity,
            "l": lead,
            "w": worker,
            "due": due,
        },
    )


@pytest.fixture()
def hand(session):
    """A worker holding 23 tasks: 20 with an entity point at known offsets from HERE, one
    lead, two entities without a point (different due dates); plus tasks that must not show:
    the same worker's closed and submitted ones, another worker's, an unassigned one."""
    me = create_user(session, "near-me-worker", "password-1234", "grid_worker").id
    other = create_user(session, "near-me-other", "password-1234", "grid_worker").id
    today = date(2026, 12, 1)
    points: dict[int, tuple[float, float]] = {}
    for n in range(20):
        # a spiral: distances from ~30 m to ~3 km, bearings all round
        dx, dy = (0.0003 * (n + 1)) * (-1) ** n, (0.0002 * (n + 1)) * (-1) ** (n // 2)
        point = (HERE[0] + dx, HERE[1] + dy)
        task = _task(
            session,
            me,
            LIVE[n % 4],
            today + timedelta(days=n % 3),
            entity=_entity(session, n, point),
        )
        points[task] = point
    lead_point = (HERE[0] + 0.0041, HERE[1] - 0.0001)
    lead = session.scalar(
        text(
            "INSERT INTO lead (description, geom) VALUES "
            "('无照经营线索', ST_SetSRID(ST_MakePoint(:x, :y), 4490)) RETURNING id"
        ),
        {"x": lead_point[0], "y": lead_point[1]},
    )
    points[_task(session, me, "assigned", today, lead=lead)] = lead_point
    late = _task(
        session, me, "assigned", today + timedelta(days=9), entity=_entity(session, 30, None)
    )
    early = _task(session, me, "accepted", today, entity=_entity(session, 31, None))
    for n, status in enumerate(("closed", "submitted")):
        _task(session, me, status, today, entity=_entity(session, 40 + n, HERE))
    _task(session, other, "assigned", today, entity=_entity(session, 50, HERE))
    _task(session, None, "open", today, entity=_entity(session, 51, HERE))
    return {"me": me, "points": points, "pointless": [early, late]}


def _page(session, worker: int, offset: int, limit: int, here=HERE):
    body, total = tasks.near_me(session, worker, *here, offset=offset, limit=limit)
    return json.loads(body), total


def test_nearest_first_by_geodesic_metres(session, hand):
    items, total = _page(session, hand["me"], 0, 50)
    assert total == 23 and len(items) == 23
    expected = {
        task: round(GEOD.inv(HERE[0], HERE[1], *point)[2]) for task, point in hand["points"].items()
    }
    with_point = items[:21]
    assert {i["id"]: i["distance_m"] for i in with_point} == expected
    distances = [i["distance_m"] for i in with_point]
    assert distances == sorted(distances)
    # no point: last, by due date
    assert [i["id"] for i in items[21:]] == hand["pointless"]
    assert all(i["distance_m"] is None and i["lon"] is None for i in items[21:])


def test_pages_add_up_to_the_whole_list(session, hand):
    whole, _ = _page(session, hand["me"], 0, 50)
    pages = []
    for offset in range(0, 30, 7):
        items, total = _page(session, hand["me"], offset, 7)
        assert total == 23
        pages.extend(items)
    assert [i["id"] for i in pages] == [i["id"] for i in whole]
    assert _page(session, hand["me"], 40, 7) == ([], 23)


def test_items_are_shaped_as_documented(session, hand):
    items, _ = _page(session, hand["me"], 0, 50)
    fields = set(NearTaskSchema().fields)
    assert all(set(i) == fields for i in items), [set(i) ^ fields for i in items]
    lead_item = next(i for i in items if i["lead_id"] is not None)
    assert lead_item["entity"] is None and lead_item["type"] == "unlicensed_lead"
    entity_item = next(i for i in items if i["entity_id"] is not None)
    assert entity_item["entity"]["id"] == entity_item["entity_id"]
    assert set(entity_item["entity"]) == set(NearTaskSchema().fields["entity"].schema.fields)
    assert entity_item["entity"]["name"].startswith("近处商户")
    assert all(i["status"] in LIVE for i in items)
    assert NearTaskSchema(many=True).validate(items) == {}


def test_no_position_orders_by_due_date(session, hand):
    body, total = tasks.near_me(session, hand["me"], None, None, offset=0, limit=50)
    items = json.loads(body)
    assert total == 23
    assert all(i["distance_m"] is None for i in items)
    assert [(i["due_on"], i["id"]) for i in items] == sorted((i["due_on"], i["id"]) for i in items)


def test_a_worker_with_nothing_in_hand(session, hand):
    nobody = create_user(session, "near-me-idle", "password-1234", "grid_worker").id
    assert _page(session, nobody, 0, 50) == ([], 0)
