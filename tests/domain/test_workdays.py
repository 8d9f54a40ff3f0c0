"""Working days (backend.domain.workdays) and the package calendar (backend.domain.cn_holidays):
known facts from the real data, the fallback for years without a calendar, and properties."""

from __future__ import annotations

from datetime import date, timedelta

import chinese_calendar
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.cn_holidays import package_rows, package_source, package_years
from backend.domain.workdays import (
    HOLIDAY,
    WORKDAY,
    CalendarRow,
    Deadline,
    WorkCalendar,
    check_rows,
)

REAL = WorkCalendar.from_rows(package_rows(), package_years())


# --------------------------------------------------------------------------- real data


def test_national_day_2024() -> None:
    for day in range(1, 8):
        assert date(2024, 10, day) in REAL.holidays
        assert not REAL.is_working_day(date(2024, 10, day))
    # make-up working days: Sunday 29 September and Saturday 12 October
    assert date(2024, 9, 29).weekday() == 6 and date(2024, 10, 12).weekday() == 5
    assert date(2024, 9, 29) in REAL.workdays and date(2024, 10, 12) in REAL.workdays
    assert REAL.is_working_day(date(2024, 9, 29)) and REAL.is_working_day(date(2024, 10, 12))
    # Saturday 28 September and Sunday 13 October stay days off
    assert not REAL.is_working_day(date(2024, 9, 28))
    assert not REAL.is_working_day(date(2024, 10, 13))


def test_ten_working_days_after_27_september_2024() -> None:
    # Fri 27 Sep → Sun 29 (1), Mon 30 (2), [1–7 Oct off], Tue 8 .. Fri 11 (3–6), Sat 12 (7),
    # Mon 14 (8), Tue 15 (9), Wed 16 (10): the 16th, not the 15th.
    assert REAL.add_working_days(date(2024, 9, 27), 10) == Deadline(date(2024, 10, 16), False)
    assert chinese_calendar.find_workday(10, date(2024, 9, 27)) == date(2024, 10, 16)
    assert REAL.working_days_between(date(2024, 9, 27), date(2024, 10, 16)) == 10
    assert REAL.working_days_between(date(2024, 10, 16), date(2024, 9, 27)) == -10


def test_every_package_day_agrees_with_the_package() -> None:
    day, last = date(package_years()[0], 1, 1), date(package_years()[-1], 12, 31)
    while day <= last:
        assert REAL.is_working_day(day) == chinese_calendar.is_workday(day), day
        day += timedelta(days=1)


def test_package_rows() -> None:
    rows = package_rows()
    years = package_years()
    assert years == list(range(2004, years[-1] + 1)) and years[-1] >= 2026
    assert len({r.day for r in rows}) == len(rows)  # no day both holiday and workday
    by_day = {r.day: r for r in rows}
    assert by_day[date(2024, 10, 1)] == CalendarRow(date(2024, 10, 1), HOLIDAY, "国庆节")
    assert by_day[date(2024, 10, 12)] == CalendarRow(date(2024, 10, 12), WORKDAY, "国庆节调休")
    assert by_day[date(2025, 1, 29)].name == "春节"
    assert all(r.name for r in rows)
    assert all(r.day.weekday() >= 5 for r in rows if r.kind == WORKDAY)
    for year in years:
        assert check_rows(year, [r for r in rows if r.day.year == year]) == [], year
    assert package_source().startswith("chinesecalendar ")


# --------------------------------------------------------------------------- fallback


def test_a_year_not_loaded_counts_monday_to_friday_and_says_so() -> None:
    last_year = package_years()[-1]
    after = last_year + 1
    assert not REAL.is_loaded(after)
    monday = next(date(after, 1, d) for d in range(1, 8) if date(after, 1, d).weekday() == 0)
    assert REAL.is_working_day(monday) and not REAL.is_working_day(monday + timedelta(days=5))
    result = REAL.add_working_days(monday, 5)
    assert result == Deadline(monday + timedelta(days=7), True)
    # nothing counted: exact, even in a year without a calendar
    assert REAL.add_working_days(monday, 0) == Deadline(monday, False)
    # counting out of the last loaded year into the next one is approximate
    assert REAL.add_working_days(date(last_year, 12, 20), 20).approximate
    # but a count that stays in the loaded year is not
    assert not REAL.add_working_days(date(last_year, 12, 1), 3).approximate
    assert REAL.unloaded_years(date(last_year, 12, 1), date(after + 1, 1, 1)) == [after, after + 1]


def test_rows_outside_the_loaded_years_are_ignored() -> None:
    # a holiday on a weekday of a year that is not loaded does not count
    cal = WorkCalendar(holidays=frozenset({date(2030, 1, 1)}), years=frozenset({2029}))
    assert cal.is_working_day(date(2030, 1, 1))  # a Tuesday
    assert cal.working_days_between(date(2029, 12, 31), date(2030, 1, 1)) == 1


def test_negative_n_is_refused() -> None:
    with pytest.raises(ValueError):
        REAL.add_working_days(date(2024, 1, 1), -1)


def test_check_rows() -> None:
    ok = [CalendarRow(date(2027, 1, 1), HOLIDAY, "元旦")]
    assert check_rows(2027, ok) == []
    problems = check_rows(
        2027,
        [
            *ok,
            CalendarRow(date(2026, 12, 31), HOLIDAY, None),
            CalendarRow(date(2027, 2, 8), WORKDAY, None),  # a Monday
            CalendarRow(date(2027, 1, 1), WORKDAY, None),
            CalendarRow(date(2027, 3, 1), "day_off", None),
        ],
    )
    assert any("2026-12-31: not in 2027" in p for p in problems)
    assert any("2027-02-08" in p and "Saturday or Sunday" in p for p in problems)
    assert any("2027-01-01: given twice" in p for p in problems)
    assert any("unknown kind 'day_off'" in p for p in problems)
    # a stray December date must not replace a whole year
    assert "1 January" in check_rows(2026, [CalendarRow(date(2026, 12, 31), HOLIDAY, "元旦")])[0]
    assert "calendars cover" in check_rows(1900, ok)[0]


# --------------------------------------------------------------------------- properties

days_2020s = st.dates(date(2020, 1, 1), date(2030, 12, 31))
calendars = st.builds(
    WorkCalendar,
    holidays=st.frozensets(days_2020s, max_size=120),
    workdays=st.frozensets(days_2020s, max_size=60),
    years=st.frozensets(st.integers(2020, 2030), max_size=11),
)
any_calendar = st.one_of(st.just(REAL), calendars)
starts = st.dates(date(2019, 6, 1), date(2031, 6, 30))
counts = st.integers(0, 400)


def naive_between(cal: WorkCalendar, a: date, b: date) -> int:
    count, day = 0, a
    while day < b:
        day += timedelta(days=1)
        count += cal.is_working_day(day)
    return count


@given(any_calendar, starts, counts, counts)
def test_adding_n_then_m_is_adding_n_plus_m(cal, start, n, m) -> None:
    first = cal.add_working_days(start, n)
    second = cal.add_working_days(first.due, m)
    both = cal.add_working_days(start, n + m)
    assert second.due == both.due
    assert both.approximate == (first.approximate or second.approximate)


@given(any_calendar, starts, st.integers(1, 400))
def test_the_due_day_is_a_working_day(cal, start, n) -> None:
    result = cal.add_working_days(start, n)
    assert result.due > start and cal.is_working_day(result.due)
    # and it is the first day with n working days after start
    assert cal.working_days_between(start, result.due - timedelta(days=1)) == n - 1


@given(any_calendar, starts, starts, counts, counts)
def test_monotonic(cal, a, b, n, m) -> None:
    a, b = min(a, b), max(a, b)
    n, m = min(n, m), max(n, m)
    assert cal.add_working_days(a, n).due <= cal.add_working_days(a, m).due
    assert cal.add_working_days(a, n).due <= cal.add_working_days(b, n).due
    if n < m:
        assert cal.add_working_days(a, n).due < cal.add_working_days(a, m).due


@given(any_calendar, starts, counts)
def test_between_inverts_add(cal, start, n) -> None:
    assert cal.working_days_between(start, cal.add_working_days(start, n).due) == n


@given(any_calendar, starts, starts, starts)
def test_between_is_additive_and_matches_counting(cal, a, b, c) -> None:
    assert cal.working_days_between(a, b) == (
        naive_between(cal, a, b) if a <= b else -naive_between(cal, b, a)
    )
    assert cal.working_days_between(a, b) + cal.working_days_between(b, c) == (
        cal.working_days_between(a, c)
    )


@given(calendars, starts, counts)
def test_approximate_iff_a_counted_day_is_in_a_year_not_loaded(cal, start, n) -> None:
    result = cal.add_working_days(start, n)
    counted = {(start + timedelta(days=i)).year for i in range(1, (result.due - start).days + 1)}
    assert result.approximate == any(y not in cal.years for y in counted)
