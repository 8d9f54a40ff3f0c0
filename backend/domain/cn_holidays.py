"""The official calendars shipped with the `chinesecalendar` package (import name
`chinese_calendar`), as rows ready to load. The package covers the years up to its release
(1.11: 2004–2026); later years are loaded as data (`gridpatrol calendar load`)."""

from __future__ import annotations

from datetime import date

import chinese_calendar
from chinese_calendar import constants

from backend.domain.workdays import HOLIDAY, WORKDAY, CalendarRow

__all__ = ["CalendarRow", "package_rows", "package_source", "package_years"]

#: suffix of a make-up working day's name: 国庆节 → 国庆节调休
WORKDAY_SUFFIX = "调休"


def _chinese_names() -> dict[str, str]:
    """English name (the package's dict values) → Chinese name where the enum has one."""
    names = {}
    for holiday in constants.Holiday:
        names[holiday.value] = getattr(holiday, "chinese", None) or holiday.value
    return names


def _name(english: str | None, names: dict[str, str]) -> str | None:
    if english is None:
        return None
    return names.get(english, english)


def package_rows() -> list[CalendarRow]:
    """Every holiday and make-up working day the installed package knows, by date."""
    names = _chinese_names()
    rows = [CalendarRow(d, HOLIDAY, _name(n, names)) for d, n in constants.holidays.items()]
    for d, n in constants.workdays.items():
        name = _name(n, names)
        rows.append(CalendarRow(d, WORKDAY, f"{name}{WORKDAY_SUFFIX}" if name else None))
    return sorted(rows, key=lambda r: r.day)


def package_years() -> list[int]:
    """The years the installed package covers."""
    days: set[date] = set(constants.holidays) | set(constants.workdays)
    return sorted({d.year for d in days})


def package_source() -> str:
    """What `calendar_year.source` says for a year loaded from the package."""
    return f"chinesecalendar {getattr(chinese_calendar, '__version__', '?')}"
