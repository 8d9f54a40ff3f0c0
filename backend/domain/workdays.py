"""Chinese working days: official holidays (also on weekdays) and make-up working days on
weekends (调休), year by year as the State Council publishes them. Pure: the calendar is data
handed in; nothing here reads the database.

A year whose calendar is not loaded falls back to Monday–Friday, and every deadline that
relied on the fallback says so (`Deadline.approximate`), so a person can be told."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

HOLIDAY = "holiday"
WORKDAY = "workday"
KINDS = (HOLIDAY, WORKDAY)
#: the years a calendar may be stored for (the database's CHECK on calendar_year)
YEAR_MIN, YEAR_MAX = 1990, 2200


class CalendarRow(NamedTuple):
    """One special day: `holiday` (an official day off) or `workday` (a make-up working day
    on a Saturday or Sunday); `name` e.g. 国庆节 or 国庆节调休."""

    day: date
    kind: str
    name: str | None = None


@dataclass(frozen=True)
class Deadline:
    due: date
    approximate: bool  # some day counted lies in a year without a loaded calendar


@dataclass(frozen=True)
class WorkCalendar:
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()  # make-up working days (调休)
    years: frozenset[int] = frozenset()  # years whose calendar is loaded

    @classmethod
    def from_rows(cls, rows: Iterable[CalendarRow], years: Iterable[int]) -> WorkCalendar:
        rows = list(rows)
        return cls(
            holidays=frozenset(r.day for r in rows if r.kind == HOLIDAY),
            workdays=frozenset(r.day for r in rows if r.kind == WORKDAY),
            years=frozenset(years),
        )

    def is_loaded(self, year: int) -> bool:
        return year in self.years

    def is_working_day(self, d: date) -> bool:
        """In a loaded year: a weekday that is no holiday, or a make-up working day. In a
        year not loaded: Monday–Friday."""
        if d.year not in self.years:
            return d.weekday() < 5
        if d in self.workdays:
            return True
        return d.weekday() < 5 and d not in self.holidays

    def add_working_days(self, start: date, n: int) -> Deadline:
        """The n-th working day after `start` (start itself not counted; n = 0 → start).
        Raises ValueError for n < 0 and OverflowError past date.max."""
        if n < 0:
            raise ValueError("n must be 0 or more")
        day, left, approximate = start, n, False
        one = timedelta(days=1)
        while left:
            day += one
            if day.year not in self.years:
                approximate = True
            if self.is_working_day(day):
                left -= 1
        return Deadline(day, approximate)

    def working_days_between(self, a: date, b: date) -> int:
        """Working days after `a` up to and including `b` (negative when b < a), so that
        `working_days_between(s, add_working_days(s, n).due) == n`."""
        if b < a:
            return -self.working_days_between(b, a)
        count = _weekdays_after(a, b)
        for d in self.holidays:
            if a < d <= b and d.year in self.years and d.weekday() < 5 and d not in self.workdays:
                count -= 1
        for d in self.workdays:
            if a < d <= b and d.year in self.years and d.weekday() >= 5:
                count += 1
        return count

    def unloaded_years(self, a: date, b: date) -> list[int]:
        """The years from a to b (inclusive) that have no loaded calendar."""
        lo, hi = min(a, b).year, max(a, b).year
        return [y for y in range(lo, hi + 1) if y not in self.years]


def _weekdays_after(a: date, b: date) -> int:
    """Monday–Friday days in (a, b], for a <= b, without looping over the days."""
    days = (b - a).days
    weeks, rest = divmod(days, 7)
    count = weeks * 5
    first = (a.weekday() + 1) % 7  # weekday of a + 1
    count += sum(1 for i in range(rest) if (first + i) % 7 < 5)
    return count


def check_rows(year: int, rows: Iterable[CalendarRow]) -> list[str]:
    """What is wrong with one year's rows (empty when they may be loaded): a year outside
    the range, a day outside the year, an unknown kind, a make-up working day that is not a
    Saturday or Sunday, the same day twice, or no 1 January (元旦 is a holiday by law every
    year; a year without it is a stray date, e.g. the 30–31 December that the next year's
    notice gives, which must not replace the whole of that year)."""
    if not YEAR_MIN <= year <= YEAR_MAX:
        return [f"year {year}: calendars cover {YEAR_MIN}–{YEAR_MAX}"]
    rows = list(rows)
    problems: list[str] = []
    new_year = date(year, 1, 1)
    if not any(r.day == new_year and r.kind == HOLIDAY for r in rows):
        problems.append(
            f"{year}: 1 January (元旦) is missing as a holiday; a year is loaded whole, so "
            f"give all of {year} or leave its dates out"
        )
    seen: dict[date, CalendarRow] = {}
    for row in rows:
        where = row.day.isoformat()
        if row.day.year != year:
            problems.append(f"{where}: not in {year}")
        if row.kind not in KINDS:
            problems.append(f"{where}: unknown kind {row.kind!r} (holiday | workday)")
        elif row.kind == WORKDAY and row.day.weekday() < 5:
            problems.append(
                f"{where}: a make-up working day (调休) must be a Saturday or Sunday, "
                f"not a {row.day.strftime('%A')}"
            )
        if row.day in seen:
            problems.append(f"{where}: given twice ({seen[row.day].kind} and {row.kind})")
        else:
            seen[row.day] = row
    return problems
