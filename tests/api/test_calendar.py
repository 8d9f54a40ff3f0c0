"""The working-day calendar through the API: read a year, replace it (admin), import a file
(admin), ask for a deadline; bad bodies and files are 4xx problem+json and load nothing."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import text

from backend.domain.cn_holidays import package_years
from backend.services import calendar

PROBLEM = "application/problem+json"
LAST = package_years()[-1]
NEXT = LAST + 1
GOOD = {
    "holidays": {f"{NEXT}-01-01": "元旦", f"{NEXT}-02-06": "春节"},
    "workdays": {f"{NEXT}-02-20": "春节调休"},  # a Saturday in 2027
    "source": "国办发明电（测试）",
}


@pytest.fixture(autouse=True)
def _no_calendar_yet(session):
    """Migration 0010 seeds the calendar; these tests start from none (rolled back after)."""
    session.execute(text("DELETE FROM holiday_calendar"))
    session.execute(text("DELETE FROM calendar_year"))


@pytest.fixture()
def seeded(session):
    calendar.seed_from_package(session)
    session.commit()


def upload(client, headers, data: bytes, filename: str = "calendar.csv", **form):
    return client.post(
        "/api/v1/calendar/imports",
        data={"file": (io.BytesIO(data), filename), **form},
        headers=headers,
        content_type="multipart/form-data",
    )


def assert_problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.get_json()
    assert resp.mimetype == PROBLEM
    return resp.get_json()


def year(client, headers, y: int) -> dict:
    resp = client.get(f"/api/v1/calendar/{y}", headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_any_role_reads_a_year(client, worker_headers, seeded) -> None:
    body = year(client, worker_headers, 2024)
    assert body["loaded"] and body["source"].startswith("chinesecalendar")
    assert {"date": "2024-10-01", "name": "国庆节"} in body["holidays"]
    assert {"date": "2024-10-12", "name": "国庆节调休"} in body["workdays"]
    assert year(client, worker_headers, NEXT) == {
        "year": NEXT,
        "loaded": False,
        "source": None,
        "loaded_at": None,
        "holidays": [],
        "workdays": [],
    }
    assert_problem(client.get("/api/v1/calendar/1989", headers=worker_headers), 422)
    assert client.get("/api/v1/calendar/2024").status_code == 401


def test_deadline(client, worker_headers, seeded) -> None:
    resp = client.get("/api/v1/calendar/deadline?start=2024-09-27&days=10", headers=worker_headers)
    assert resp.status_code == 200
    assert resp.get_json() == {
        "start": "2024-09-27",
        "days": 10,
        "due": "2024-10-16",
        "approximate": False,
        "unloaded_years": [],
        "note": None,
    }
    late = client.get(
        f"/api/v1/calendar/deadline?start={LAST}-12-24&days=10", headers=worker_headers
    ).get_json()
    assert late["approximate"] and late["unloaded_years"] == [NEXT] and str(NEXT) in late["note"]
    today = client.get("/api/v1/calendar/deadline?days=0", headers=worker_headers).get_json()
    assert today["due"] == today["start"] == calendar.today().isoformat()
    for query in (
        "days=366",
        "days=-1",
        "start=2024-02-30&days=1",
        "start=2024-01-01",
        "start=9999-12-31&days=5",
        "days=x",
    ):
        assert_problem(
            client.get(f"/api/v1/calendar/deadline?{query}", headers=worker_headers), 422
        )


def test_admin_replaces_a_year(client, admin_headers, worker_headers, seeded) -> None:
    before = client.get(
        f"/api/v1/calendar/deadline?start={NEXT}-02-05&days=1", headers=worker_headers
    ).get_json()
    assert before["due"] == f"{NEXT}-02-08" and before["approximate"]

    resp = client.put(f"/api/v1/calendar/{NEXT}", json=GOOD, headers=admin_headers)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["loaded"] and body["source"] == GOOD["source"]
    assert [d["date"] for d in body["holidays"]] == [f"{NEXT}-01-01", f"{NEXT}-02-06"]
    assert year(client, worker_headers, NEXT) == body

    after = client.get(
        f"/api/v1/calendar/deadline?start={NEXT}-02-05&days=1", headers=worker_headers
    ).get_json()
    assert after["due"] == f"{NEXT}-02-08" and not after["approximate"]
    sat = client.get(
        f"/api/v1/calendar/deadline?start={NEXT}-02-19&days=1", headers=worker_headers
    ).get_json()
    assert sat["due"] == f"{NEXT}-02-20"  # the make-up Saturday counts

    again = client.put(
        f"/api/v1/calendar/{NEXT}",
        json={"holidays": {f"{NEXT}-01-01": None}},
        headers=admin_headers,
    ).get_json()
    assert again["workdays"] == [] and again["source"] == "api"
    assert again["holidays"] == [{"date": f"{NEXT}-01-01", "name": None}]
    events = client.get(
        f"/api/v1/audit?object_type=calendar&object_id={NEXT}", headers=admin_headers
    ).get_json()
    assert len(events) == 2 and all(e["action"] == "load" for e in events)

    resp = client.put(f"/api/v1/calendar/{NEXT}", json=GOOD, headers=worker_headers)
    assert_problem(resp, 403)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "holidays": {**GOOD["holidays"], f"{LAST}-12-31": "元旦"}}, "holidays."),
        ({**GOOD, "workdays": {f"{NEXT}-02-08": "x"}}, None),  # a Monday
        ({**GOOD, "workdays": {f"{NEXT}-01-01": "x"}}, None),  # both kinds
        ({**GOOD, "holidays": {f"{NEXT}-02-06": "春节"}}, None),  # no 1 January
        ({**GOOD, "holidays": {"soon": "x"}}, "holidays.soon"),
        ({**GOOD, "holidays": {f"{NEXT}-01-01": "a\u0000b"}}, "holidays"),
        ({**GOOD, "holidays": {f"{NEXT}-01-01": "x" * 101}}, "holidays"),
        ({**GOOD, "source": ""}, "source"),
        ({**GOOD, "holidays": []}, "holidays"),
        ({"workdays": {}}, "holidays"),
    ],
)
def test_bad_bodies_are_422_and_load_nothing(
    client, admin_headers, worker_headers, body, field
) -> None:
    problem = assert_problem(
        client.put(f"/api/v1/calendar/{NEXT}", json=body, headers=admin_headers), 422
    )
    if field:
        assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    assert not year(client, worker_headers, NEXT)["loaded"]


def test_put_a_year_out_of_range(client, admin_headers) -> None:
    body = {"holidays": {"2300-01-01": "元旦"}}
    assert_problem(client.put("/api/v1/calendar/2300", json=body, headers=admin_headers), 422)


def test_import_csv_and_json(client, admin_headers, worker_headers) -> None:
    csv = f"日期,类型,名称\n{NEXT}-01-01,节假日,元旦\n{NEXT}-02-20,调休,春节调休\n"
    resp = upload(client, admin_headers, csv.encode("gb18030"), f"{NEXT}年节假日.csv")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["source"] == f"upload:{NEXT}年节假日.csv"
    loaded = body["years"][0]
    assert (loaded["year"], loaded["holidays"], loaded["workdays"]) == (NEXT, 1, 1)
    assert not loaded["replaced"]
    doc = [
        {"year": NEXT, "holidays": {f"{NEXT}-01-01": "元旦"}},
        {"year": NEXT + 1, "holidays": {f"{NEXT + 1}-01-01": "元旦"}},
    ]
    resp = upload(client, admin_headers, json.dumps(doc).encode(), "x.json", source="通知")
    assert resp.status_code == 200, resp.get_json()
    assert [(y["year"], y["replaced"]) for y in resp.get_json()["years"]] == [
        (NEXT, True),
        (NEXT + 1, False),
    ]
    assert year(client, worker_headers, NEXT + 1)["source"] == "通知"
    assert_problem(upload(client, worker_headers, csv.encode()), 403)


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"", "x.csv"),
        (b"\x00\x01\x02garbage", "x.csv"),
        (b"PK\x03\x04 not really a zip", "x.xlsx"),
        ("日期,类型\n2031-01-01,节假日\n2031-01-06,调休\n".encode(), "x.csv"),
        (b'{"year": 2031, "holidays": {"2031-01-01": "a", "2031-01-01": "b"}}', "x.json"),
        (
            json.dumps(
                [
                    {"year": 2031, "holidays": {"2031-01-01": "元旦"}},
                    {"year": 2032, "holidays": {"2032-01-02": "x"}},
                ]
            ).encode(),
            "two.json",
        ),
        ("日期,类型\n2031-01-01,节假日\n2032-01-01,节假日\n2032-13-01,节假日\n".encode(), "x.csv"),
        ("日期,类型\n2031-01-01,节假日\n".encode("utf-16"), "x.csv"),
    ],
)
def test_bad_files_are_422_and_load_nothing(
    client, admin_headers, worker_headers, data, filename
) -> None:
    assert_problem(upload(client, admin_headers, data, filename), 422)
    for y in (2031, 2032):
        assert not year(client, worker_headers, y)["loaded"]


def test_missing_file_is_422(client, admin_headers) -> None:
    resp = client.post(
        "/api/v1/calendar/imports",
        data={"source": "x"},
        headers=admin_headers,
        content_type="multipart/form-data",
    )
    assert_problem(resp, 422)
