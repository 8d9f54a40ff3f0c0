"""The calendar in the database (backend.services.calendar): seeding from the package, replacing
a year, parsing CSV / XLSX / JSON files (all or nothing), deadlines; and the CLI group."""

from __future__ import annotations

import io
import json
from datetime import date, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from backend.cli_calendar import calendar_group
from backend.domain.cn_holidays import package_rows, package_years
from backend.domain.workdays import HOLIDAY, WORKDAY, CalendarRow, Deadline, WorkCalendar
from backend.services import calendar
from backend.services.errors import InvalidInput

CSV_2027 = (
    "日期,类型,名称\n"
    "2027-01-01,节假日,元旦\n"
    "2027/2/6,节假日,春节\n"
    "2027年2月7日,休息,春节\n"
    "20270208,假日,春节\n"
    "2027-02-20,调休,春节调休\n"
    "2027-02-21,上班,春节调休\n"
    "2027-10-09,补班,国庆节调休\n"
    ",,\n"
)


@pytest.fixture(autouse=True)
def _no_calendar_yet(session):
    """Migration 0010 seeds the calendar; these tests start from none (rolled back after)."""
    session.execute(text("DELETE FROM holiday_calendar"))
    session.execute(text("DELETE FROM calendar_year"))


def days(session, year: int) -> list[tuple[date, str, str | None]]:
    return [
        tuple(r)
        for r in session.execute(
            text(
                "SELECT day, kind, name FROM holiday_calendar WHERE extract(year FROM day) = :y "
                "ORDER BY day"
            ),
            {"y": year},
        )
    ]


def audit_events(session, year: int) -> list[dict]:
    return [
        r.changes
        for r in session.execute(
            text(
                "SELECT changes FROM audit_event WHERE object_type = 'calendar' "
                "AND object_id = :y ORDER BY id"
            ),
            {"y": str(year)},
        )
    ]


def test_seed_from_package_is_idempotent(session) -> None:
    first = calendar.seed_from_package(session)
    assert first["loaded"] == package_years() and first["already_loaded"] == []
    again = calendar.seed_from_package(session)
    assert again["loaded"] == [] and again["already_loaded"] == package_years()
    summary = calendar.year_summary(session, 2024)
    assert summary["loaded"] and summary["source"].startswith("chinesecalendar")
    holidays = {d["date"]: d["name"] for d in summary["holidays"]}
    assert all(holidays[date(2024, 10, d)] == "国庆节" for d in range(1, 8))
    assert [d["date"] for d in summary["workdays"] if d["date"].month in (9, 10)] == [
        date(2024, 9, 14),
        date(2024, 9, 29),
        date(2024, 10, 12),
    ]
    assert len(audit_events(session, 2024)) == 1
    assert calendar.deadline(session, date(2024, 9, 27), 10) == Deadline(date(2024, 10, 16), False)


def test_seed_leaves_a_year_loaded_from_elsewhere_alone(session) -> None:
    calendar.load_year_rows(session, 2025, [CalendarRow(date(2025, 1, 1), HOLIDAY, "元旦")], "x")
    result = calendar.seed_from_package(session)
    assert 2025 not in result["loaded"] and 2025 in result["already_loaded"]
    assert calendar.year_summary(session, 2025)["source"] == "x"


def test_a_year_is_replaced_whole_and_audited(session) -> None:
    first = calendar.load_file(session, CSV_2027.encode("gb18030"), "2027.csv", "file:2027.csv")
    assert first["years"] == [
        {
            "year": 2027,
            "source": "file:2027.csv",
            "replaced": False,
            "holidays": 4,
            "workdays": 3,
            "added": 7,
            "removed": 0,
            "changed": 0,
        }
    ]
    assert days(session, 2027)[:2] == [
        (date(2027, 1, 1), HOLIDAY, "元旦"),
        (date(2027, 2, 6), HOLIDAY, "春节"),
    ]
    body = {
        "year": 2027,
        "holidays": {"2027-01-01": "元旦", "2027-02-06": "春节放假"},
        "workdays": {"2027-02-20": None},
    }
    second = calendar.load_file(session, json.dumps(body).encode(), "2027.json", "国办发明电")
    (result,) = second["years"]
    assert result["replaced"] and (result["added"], result["removed"], result["changed"]) == (
        0,
        4,
        2,
    )
    assert days(session, 2027) == [
        (date(2027, 1, 1), HOLIDAY, "元旦"),
        (date(2027, 2, 6), HOLIDAY, "春节放假"),
        (date(2027, 2, 20), WORKDAY, None),
    ]
    events = audit_events(session, 2027)
    assert len(events) == 2
    assert events[1]["source"] == {"from": "file:2027.csv", "to": "国办发明电"}
    assert events[1]["holidays"] == {"from": 4, "to": 2}
    assert events[1]["days_removed"] == ["2027-02-07", "2027-02-08", "2027-02-21", "2027-10-09"]
    assert events[1]["days_changed"] == ["2027-02-06", "2027-02-20"]
    # the neighbouring years are untouched
    calendar.seed_from_package(session)
    calendar.load_file(session, json.dumps(body).encode(), "2027.json", "again")
    assert len(days(session, 2026)) > 30


def test_deadlines_across_loaded_and_unloaded_years(session) -> None:
    calendar.seed_from_package(session)
    last = package_years()[-1]
    inside = calendar.explain_deadline(session, date(last, 12, 1), 3)
    assert not inside["approximate"] and inside["unloaded_years"] == [] and not inside["note"]
    across = calendar.explain_deadline(session, date(last, 12, 24), 10)
    assert across["approximate"] and across["unloaded_years"] == [last + 1]
    assert str(last + 1) in across["note"]
    # once that year is loaded the same deadline is exact (and counts its holidays)
    calendar.load_year_rows(
        session,
        last + 1,
        [CalendarRow(date(last + 1, 1, 1), HOLIDAY, "元旦")],
        "test",
    )
    exact = calendar.deadline(session, date(last, 12, 24), 10)
    assert not exact.approximate
    assert exact.due >= across["due"]
    # a long count reads every year it reaches
    real = WorkCalendar.from_rows(package_rows(), package_years())
    for n in (365, 1000):
        assert calendar.deadline(session, date(2004, 12, 31), n) == real.add_working_days(
            date(2004, 12, 31), n
        )
    with pytest.raises(InvalidInput):
        calendar.deadline(session, date(9999, 12, 30), 5)
    with pytest.raises(InvalidInput):
        calendar.deadline(session, date(2024, 1, 1), -1)


def test_work_calendar_reads_only_the_years_asked(session) -> None:
    calendar.seed_from_package(session)
    cal = calendar.work_calendar(session, 2023, 2024)
    assert cal.years == frozenset({2023, 2024})
    assert date(2024, 10, 1) in cal.holidays and date(2024, 10, 12) in cal.workdays
    assert not any(d.year == 2025 for d in cal.holidays)
    assert calendar.work_calendar(session, 2025, 2024).years == frozenset()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("日期,类型,名称\n2027-01-01,节假日,元旦\n2027-02-30,节假日,春节\n", "row 3: date: not a"),
        ("日期,类型,名称\n2027-01-01,节假日,元旦\n2027-02-06,请假,春节\n", "row 3: kind: unknown"),
        ("date,kind,name\n2027-01-01,holiday,\n2027-02-08,workday,x\n", "a Monday; a make-up"),
        ("日期,类型\n2027-01-01,节假日\n2027-01-01,节假日\n", "row 3: date: 2027-01-01 is already"),
        ("日期,类型\n2027-01-01,节假日\n2027-1-1,调休\n", "already given at row 2"),
        ("日期,名称\n2027-01-01,元旦\n", "Missing columns"),
        ("日期,类型,名称\n", "no rows"),
        ("日期,类型\n2027-01-01,节假日\n2028-12-31,节假日\n", "2028: 1 January"),
        ("日期,类型\n1900-01-01,节假日\n", "calendars cover"),
        ("日期,类型,名称\n2027-01-01,节假日,a\x01b\n", "control characters"),
    ],
)
def test_bad_csv_is_rejected_with_row_numbers_and_nothing_loaded(session, body, message) -> None:
    with pytest.raises(InvalidInput) as caught:
        calendar.load_file(session, body.encode("gb18030"), "bad.csv", "test")
    assert message in caught.value.detail, caught.value.detail
    assert caught.value.errors or "Missing" in message or "no rows" in message
    assert session.scalar(text("SELECT count(*) FROM holiday_calendar")) == 0
    assert session.scalar(text("SELECT count(*) FROM calendar_year")) == 0


def test_many_bad_rows_are_all_reported(session) -> None:
    body = "日期,类型\n" + "".join(f"2027-13-{d:02d},节假日\n" for d in range(1, 21))
    with pytest.raises(InvalidInput) as caught:
        calendar.parse_calendar_file(body.encode(), "x.csv")
    assert caught.value.detail.startswith("20 row(s) rejected")
    assert [e["row"] for e in caught.value.errors] == list(range(2, 22))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"{", "not valid UTF-8 JSON"),
        (b'{"year": 2027, "holidays": {"2027-01-01": "a", "2027-01-01": "b"}}', "given twice"),
        (b'{"year": 2027, "holidays": {"2027-01-01": "a"}, "holiday": {}}', "unknown field"),
        (b'{"holidays": {"2027-01-01": "a"}}', "year: required"),
        (b'{"year": 2027, "holidays": {"2028-01-01": "a"}}', "not in 2027"),
        (
            b'{"year": 2027, "holidays": {"2027-01-01": "a"}, "workdays": {"2027-02-08": null}}',
            "a Monday",
        ),
        (b'{"year": 2027, "holidays": ["2027-01-01"]}', "must be an object"),
        (b'{"year": 2027, "holidays": {}}', "1 January"),
        (b'[{"year": 2027, "holidays": {"2027-01-01": 1}}, {"year": 2027}]', "2027 is given twice"),
        (b"[1, 2]", "The JSON must be"),
        (b"[" * 5000 + b"]" * 5000, "not valid UTF-8 JSON"),
    ],
)
def test_bad_json_is_rejected(session, data, message) -> None:
    with pytest.raises(InvalidInput) as caught:
        calendar.load_file(session, data, "cal.json", "test")
    assert message in caught.value.detail, caught.value.detail
    assert session.scalar(text("SELECT count(*) FROM calendar_year")) == 0


def test_a_multi_year_file_is_all_or_nothing(session) -> None:
    good = {"year": 2027, "holidays": {"2027-01-01": "元旦"}}
    bad = {"year": 2028, "holidays": {"2028-01-01": "元旦"}, "workdays": {"2028-01-03": "x"}}
    with pytest.raises(InvalidInput, match="2028-01-03"):
        calendar.load_file(session, json.dumps([good, bad]).encode(), "two.json", "test")
    assert session.scalar(text("SELECT count(*) FROM calendar_year")) == 0
    result = calendar.load_file(
        session, json.dumps([good, {**bad, "workdays": {}}]).encode(), "two.json", "test"
    )
    assert [y["year"] for y in result["years"]] == [2027, 2028]


def test_utf8_csv_with_bom_and_english_headers(session) -> None:
    data = "\ufeffDate,Kind,Name\n2027-01-01,Holiday,New Year\n2027-02-20,WORKDAY,\n".encode()
    assert calendar.parse_calendar_file(data, "x.csv") == {
        2027: [
            CalendarRow(date(2027, 1, 1), HOLIDAY, "New Year"),
            CalendarRow(date(2027, 2, 20), WORKDAY, None),
        ]
    }


def test_xlsx(session) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["日期", "类型", "名称"])
    sheet.append([datetime(2027, 1, 1), "节假日", "元旦"])
    sheet.append(["2027-02-20", "调休", "春节调休"])
    buf = io.BytesIO()
    book.save(buf)
    result = calendar.load_file(session, buf.getvalue(), "2027.xlsx", "xlsx")
    assert (result["years"][0]["holidays"], result["years"][0]["workdays"]) == (1, 1)


def test_year_summary_of_a_year_not_loaded_and_out_of_range(session) -> None:
    assert calendar.year_summary(session, 2199) == {
        "year": 2199,
        "loaded": False,
        "source": None,
        "loaded_at": None,
        "holidays": [],
        "workdays": [],
    }
    with pytest.raises(InvalidInput):
        calendar.year_summary(session, 2201)
    with pytest.raises(InvalidInput):
        calendar.load_year_rows(session, 1989, [], "x")
    with pytest.raises(InvalidInput, match="source"):
        calendar.load_year_rows(session, 2027, [CalendarRow(date(2027, 1, 1), HOLIDAY)], " ")


# --------------------------------------------------------------------------- CLI


def run(app, *args: str, expect: int = 0) -> str:
    sessions = app.extensions["gridpatrol.sessionmaker"]  # bound to the test's transaction
    result = CliRunner().invoke(calendar_group, list(args), obj={"session_factory": sessions})
    assert result.exit_code == expect, result.output
    return result.output


def test_cli(app, session, tmp_path) -> None:
    assert "2026" in run(app, "show", "2026") and "not loaded" in run(app, "show", "2026")
    out = run(app, "seed")
    assert "loaded 23 year(s): 2004–2026" in out
    assert "nothing to load" in run(app, "seed")
    shown = run(app, "show", "2024")
    assert "loaded from chinesecalendar" in shown and "2024-10-12 Sat  国庆节调休" in shown
    assert json.loads(run(app, "show", "2024", "--json"))["loaded"] is True

    good = tmp_path / "2027.csv"
    good.write_bytes(CSV_2027.encode("gb18030"))
    assert "2027 loaded: 4 holidays, 3 make-up working days" in run(app, "load", str(good))
    assert "2027 replaced" in run(app, "load", str(good), "--source", "国办发明电〔2026〕1号")
    assert calendar.year_summary(session, 2027)["source"] == "国办发明电〔2026〕1号"

    bad = tmp_path / "bad.csv"
    bad.write_text("日期,类型\n2028-01-01,节假日\n2028-01-03,调休\n", encoding="utf-8")
    out = run(app, "load", str(bad), expect=1)
    assert "row 3: date: 2028-01-03 is a Monday" in out
    assert not calendar.year_summary(session, 2028)["loaded"]
    assert "Calendars cover the years 1990–2200" in run(app, "show", "3000", expect=1)
