"""The working-day calendar in the database: which years are loaded (calendar_year) and their
holidays and make-up working days (holiday_calendar). A year is always replaced whole, in one
transaction, with an audit event; a file of several years is loaded all or nothing.

Files: CSV (UTF-8 or GB18030) or XLSX with the columns 日期 / date, 类型 / kind, 名称 / name,
or JSON `{"year": 2027, "holidays": {"2027-01-01": "元旦"}, "workdays": {...}}` (or a list
of such objects)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.cn_holidays import package_rows, package_source, package_years
from backend.domain.workdays import (
    HOLIDAY,
    WORKDAY,
    YEAR_MAX,
    YEAR_MIN,
    CalendarRow,
    Deadline,
    WorkCalendar,
    check_rows,
)
from backend.services import audit, clock
from backend.services.errors import InvalidInput
from backend.services.tabular import read_table

MAX_ROWS = 10_000  # a year has ~40 special days; anything near this is not a calendar
MAX_NAME = 100
MAX_SOURCE = 200
MAX_LISTED_ERRORS = 50

#: canonical column → accepted headers (compared after stripping spaces, case-insensitive)
HEADERS: dict[str, tuple[str, ...]] = {
    "day": ("日期", "date", "day"),
    "kind": ("类型", "kind", "type"),
    "name": ("名称", "节日", "节假日名称", "name"),
}
#: kind as written in a file → kind stored (lower-cased, spaces removed)
KIND_ALIASES: dict[str, str] = {
    "holiday": HOLIDAY,
    "节假日": HOLIDAY,
    "休息": HOLIDAY,
    "休息日": HOLIDAY,
    "放假": HOLIDAY,
    "假日": HOLIDAY,
    "休": HOLIDAY,
    "workday": WORKDAY,
    "调休": WORKDAY,
    "上班": WORKDAY,
    "补班": WORKDAY,
    "调休上班": WORKDAY,
    "班": WORKDAY,
}
_DATE = re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?|(\d{4})(\d{2})(\d{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


# --------------------------------------------------------------------------- loading


def load_year_rows(
    session: Session, year: int, rows: Iterable[CalendarRow], source: str
) -> dict[str, Any]:
    """Replace one year's calendar with `rows` (delete + insert of that year, calendar_year
    upserted), audited. Raises InvalidInput when the rows are not a valid calendar of the
    year; the caller commits."""
    rows = sorted(rows, key=lambda r: r.day)
    source = _check_source(source)
    problems = check_rows(year, rows)
    if problems:
        raise InvalidInput(
            f"The calendar of {year} cannot be loaded: {_summary(problems)}",
            errors=[{"in": "body", "field": str(year), "messages": problems}],
        )
    first, after = date(year, 1, 1), date(year + 1, 1, 1)
    # Lock the year first: a concurrent load of the same year waits here instead of
    # colliding on the days' primary key.
    old_source = session.scalar(
        text("SELECT source FROM calendar_year WHERE year = :y FOR UPDATE"), {"y": year}
    )
    session.execute(
        text(
            "INSERT INTO calendar_year (year, source, loaded_at) VALUES (:y, :s, now()) "
            "ON CONFLICT (year) DO UPDATE SET source = EXCLUDED.source, "
            "loaded_at = EXCLUDED.loaded_at"
        ),
        {"y": year, "s": source},
    )
    removed = session.execute(
        text(
            "DELETE FROM holiday_calendar WHERE day >= :first AND day < :after "
            "RETURNING day, kind, name"
        ),
        {"first": first, "after": after},
    ).all()
    session.execute(
        text(
            "INSERT INTO holiday_calendar (day, kind, name) "
            "SELECT * FROM unnest(CAST(:days AS date[]), CAST(:kinds AS text[]), "
            "CAST(:names AS text[]))"
        ),
        {
            "days": [r.day for r in rows],
            "kinds": [r.kind for r in rows],
            "names": [r.name for r in rows],
        },
    )
    before = {r.day: (r.kind, r.name) for r in removed}
    after_rows = {r.day: (r.kind, r.name) for r in rows}
    added = sorted(d for d in after_rows if d not in before)
    dropped = sorted(d for d in before if d not in after_rows)
    changed = sorted(d for d in after_rows if d in before and before[d] != after_rows[d])

    def count(kind: str, days: Mapping[date, tuple[str, str | None]]) -> int:
        return sum(1 for k, _ in days.values() if k == kind)

    audit.record(
        session,
        "load",
        "calendar",
        str(year),
        changes={
            "source": {"from": old_source, "to": source},
            "holidays": {"from": count(HOLIDAY, before), "to": count(HOLIDAY, after_rows)},
            "workdays": {"from": count(WORKDAY, before), "to": count(WORKDAY, after_rows)},
            "days_added": [d.isoformat() for d in added],
            "days_removed": [d.isoformat() for d in dropped],
            "days_changed": [d.isoformat() for d in changed],
        },
    )
    return {
        "year": year,
        "source": source,
        "replaced": old_source is not None,
        "holidays": count(HOLIDAY, after_rows),
        "workdays": count(WORKDAY, after_rows),
        "added": len(added),
        "removed": len(dropped),
        "changed": len(changed),
    }


def seed_from_package(session: Session) -> dict[str, Any]:
    """Load every year the installed `chinesecalendar` covers that is not loaded yet (a year
    loaded from anywhere else is left alone). Idempotent; the caller commits."""
    years = package_years()
    present = set(
        session.scalars(text("SELECT year FROM calendar_year WHERE year = ANY(:ys)"), {"ys": years})
    )
    missing = [y for y in years if y not in present]
    if missing:
        source = package_source()
        by_year = _by_year(package_rows())
        for year in missing:
            load_year_rows(session, year, by_year.get(year, []), source)
    return {"loaded": missing, "already_loaded": sorted(present), "package_years": years}


def load_file(session: Session, data: bytes, filename: str, source: str) -> dict[str, Any]:
    """Replace every year the file holds (all or nothing: the whole file is checked before
    anything is written). The caller commits."""
    by_year = parse_calendar_file(data, filename)
    source = _check_source(source)
    results = [load_year_rows(session, year, rows, source) for year, rows in by_year.items()]
    return {"filename": filename, "source": source, "years": results}


# --------------------------------------------------------------------------- reading


def work_calendar(session: Session, start_year: int, end_year: int) -> WorkCalendar:
    """The calendar of the years start_year..end_year (only those; any other year counts as
    not loaded). Two small indexed reads: cheap enough for every request."""
    lo, hi = max(start_year, 1), min(end_year, 9999)
    if lo > hi:
        return WorkCalendar()
    years = session.scalars(
        text("SELECT year FROM calendar_year WHERE year BETWEEN :lo AND :hi"), {"lo": lo, "hi": hi}
    ).all()
    rows = session.execute(
        text("SELECT day, kind FROM holiday_calendar WHERE day BETWEEN :first AND :last"),
        {"first": date(lo, 1, 1), "last": date(hi, 12, 31)},
    ).all()
    return WorkCalendar.from_rows((CalendarRow(r.day, r.kind) for r in rows), years)


def deadline(session: Session, start: date, n: int) -> Deadline:
    """The n-th working day after `start` (start not counted), and whether a year without a
    loaded calendar was involved (then Monday–Friday was assumed)."""
    return _deadline(session, start, n)[0]


def explain_deadline(session: Session, start: date, n: int) -> dict[str, Any]:
    """`deadline` with what a person needs to be told: the years that had no calendar."""
    result, calendar = _deadline(session, start, n)
    missing = (
        calendar.unloaded_years(start + timedelta(days=1), result.due) if result.due > start else []
    )
    note = None
    if result.approximate:
        note = (
            f"No holiday calendar is loaded for {', '.join(map(str, missing))}: Monday–Friday "
            f"was counted as working days, so the date may move once the calendar is loaded."
        )
    return {
        "start": start,
        "days": n,
        "due": result.due,
        "approximate": result.approximate,
        "unloaded_years": missing,
        "note": note,
    }


def today() -> date:
    """Today in the business time zone, where working-day deadlines are counted (the one
    clock: `backend.services.clock`)."""
    return clock.today()


def year_summary(session: Session, year: int) -> dict[str, Any]:
    """Whether the year is loaded, from where and when, and its holidays and make-up
    working days."""
    check_year(year)
    meta = session.execute(
        text("SELECT source, loaded_at FROM calendar_year WHERE year = :y"), {"y": year}
    ).one_or_none()
    rows = session.execute(
        text(
            "SELECT day, kind, name FROM holiday_calendar "
            "WHERE day >= :first AND day <= :last ORDER BY day"
        ),
        {"first": date(year, 1, 1), "last": date(year, 12, 31)},
    ).all()
    return {
        "year": year,
        "loaded": meta is not None,
        "source": meta.source if meta else None,
        "loaded_at": meta.loaded_at if meta else None,
        "holidays": [{"date": r.day, "name": r.name} for r in rows if r.kind == HOLIDAY],
        "workdays": [{"date": r.day, "name": r.name} for r in rows if r.kind == WORKDAY],
    }


# --------------------------------------------------------------------------- parsing


def rows_from_mapping(
    year: int | None,
    holidays: Any,
    workdays: Any,
    *,
    where: str = "json",
    prefix: str = "",
) -> list[CalendarRow]:
    """Rows from `{"YYYY-MM-DD": name}` mappings (None: no such days), every date checked
    to be in `year` when given. Raises InvalidInput naming each bad field."""
    errors: list[dict[str, Any]] = []
    rows: list[CalendarRow] = []
    for kind, field, mapping in ((HOLIDAY, "holidays", holidays), (WORKDAY, "workdays", workdays)):
        if mapping is None:
            continue
        if not isinstance(mapping, dict):
            errors.append(_err(where, f"{prefix}{field}", "must be an object of date: name"))
            continue
        for key, value in mapping.items():
            label = f"{prefix}{field}.{str(key)[:20]}"
            day = _parse_date(key)
            problems = []
            if day is None:
                problems.append(f"not a date (YYYY-MM-DD): {str(key)[:20]!r}")
            elif year is not None and day.year != year:
                problems.append(f"not in {year}")
            name, name_problem = _clean_name(value)
            if name_problem:
                problems.append(name_problem)
            if problems:
                errors.append({"in": where, "field": label, "messages": problems})
            elif day is not None:
                rows.append(CalendarRow(day, kind, name))
    if errors:
        raise InvalidInput(_errors_detail(errors), errors=errors[:MAX_LISTED_ERRORS])
    return rows


def parse_calendar_file(data: bytes, filename: str) -> dict[int, list[CalendarRow]]:
    """Year → its rows, from a CSV / XLSX table or the JSON format; every problem of the
    file is found before anything is returned (InvalidInput with row-numbered messages)."""
    if not data.strip():
        raise InvalidInput("The file is empty.")
    if filename.lower().endswith(".json") or data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (
        b"{",
        b"[",
    ):
        by_year = _parse_json(data)
    else:
        by_year = _parse_table(data, filename)
    errors = []
    for year, rows in by_year.items():
        problems = check_rows(year, rows)
        if problems:
            errors.append({"in": "file", "field": str(year), "messages": problems})
    if errors:
        raise InvalidInput(_errors_detail(errors), errors=errors)
    return dict(sorted(by_year.items()))


def _parse_json(data: bytes) -> dict[int, list[CalendarRow]]:
    try:
        doc = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"The file is not valid UTF-8 JSON: {exc}.") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items or not all(isinstance(item, dict) for item in items):
        raise InvalidInput(
            'The JSON must be {"year": 2027, "holidays": {"2027-01-01": "元旦", ...}, '
            '"workdays": {...}} or a list of such objects.'
        )
    by_year: dict[int, list[CalendarRow]] = {}
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        prefix = f"{i}." if isinstance(doc, list) else ""
        unknown = sorted(set(item) - {"year", "holidays", "workdays"})
        if unknown:
            errors.append(_err("file", f"{prefix}{unknown[0]}", "unknown field"))
        year = item.get("year")
        if isinstance(year, bool) or not isinstance(year, int):
            errors.append(_err("file", f"{prefix}year", "required: the year, e.g. 2027"))
            continue
        if not YEAR_MIN <= year <= YEAR_MAX:
            errors.append(_err("file", f"{prefix}year", f"calendars cover {YEAR_MIN}–{YEAR_MAX}"))
            continue
        if year in by_year:
            errors.append(_err("file", f"{prefix}year", f"{year} is given twice"))
            continue
        try:
            by_year[year] = rows_from_mapping(
                year, item.get("holidays"), item.get("workdays"), where="file", prefix=prefix
            )
        except InvalidInput as exc:
            errors.extend(exc.errors or [])
    if errors:
        raise InvalidInput(_errors_detail(errors), errors=errors[:MAX_LISTED_ERRORS])
    return by_year


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{key!r} is given twice")
        out[key] = value
    return out


def _parse_table(data: bytes, filename: str) -> dict[int, list[CalendarRow]]:
    table, _encoding = read_table(io.BytesIO(data), filename, None)
    try:
        header = next(table)
    except StopIteration:
        raise InvalidInput("The file is empty.") from None
    columns = _map_headers(list(header))
    rows: list[CalendarRow] = []
    first_seen: dict[date, int] = {}
    errors: list[dict[str, Any]] = []
    for row_no, raw_row in enumerate(table, start=2):
        raw = {canon: raw_row[i] if i < len(raw_row) else None for i, canon in columns.items()}
        if all(v is None or str(v).strip() == "" for v in raw.values()):
            continue
        if len(rows) + len(errors) >= MAX_ROWS:
            raise InvalidInput(f"More than {MAX_ROWS} rows: this is not a holiday calendar.")
        problems = []
        day = _parse_date(raw.get("day"))
        if day is None:
            problems.append(f"date: not a date (YYYY-MM-DD): {str(raw.get('day'))[:20]!r}")
        elif not YEAR_MIN <= day.year <= YEAR_MAX:
            problems.append(f"date: calendars cover {YEAR_MIN}–{YEAR_MAX}")
        kind_text = "".join(str(raw.get("kind") or "").split()).lower()
        kind = KIND_ALIASES.get(kind_text)
        if kind is None:
            problems.append(
                f"kind: unknown {kind_text[:20]!r} (holiday / 节假日 / 休息, or "
                f"workday / 调休 / 上班 / 补班)"
            )
        name, name_problem = _clean_name(raw.get("name"))
        if name_problem:
            problems.append(f"name: {name_problem}")
        if day is not None and kind == WORKDAY and day.weekday() < 5:
            problems.append(
                f"date: {day.isoformat()} is a {day.strftime('%A')}; a make-up working day "
                f"(调休) must be a Saturday or Sunday"
            )
        if day is not None and day in first_seen:
            problems.append(f"date: {day.isoformat()} is already given at row {first_seen[day]}")
        elif day is not None:
            first_seen[day] = row_no
        if problems:
            errors.append({"in": "file", "row": row_no, "messages": problems})
        elif day is not None and kind is not None:
            rows.append(CalendarRow(day, kind, name))
    if errors:
        raise InvalidInput(
            f"{len(errors)} row(s) rejected, nothing loaded: "
            + "; ".join(f"row {e['row']}: {', '.join(e['messages'])}" for e in errors[:5])
            + (" ..." if len(errors) > 5 else ""),
            errors=errors[:MAX_LISTED_ERRORS],
        )
    if not rows:
        raise InvalidInput("The file has a header but no rows.")
    return _by_year(rows)


def _map_headers(header: list[Any]) -> dict[int, str]:
    lookup = {alias.lower(): canon for canon, aliases in HEADERS.items() for alias in aliases}
    columns: dict[int, str] = {}
    for i, name in enumerate(header):
        key = "".join(str(name or "").split()).lstrip("\ufeff").lower()
        if key in lookup and lookup[key] not in columns.values():
            columns[i] = lookup[key]
    missing = [c for c in ("day", "kind") if c not in columns.values()]
    if missing:
        accepted = "; ".join(f"{' / '.join(HEADERS[c])}" for c in missing)
        raise InvalidInput(f"Missing columns in the header row ({accepted}).")
    return columns


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    match = _DATE.fullmatch(str(value).strip())
    if not match:
        return None
    parts = [int(p) for p in match.groups() if p is not None]
    try:
        return date(*parts)
    except ValueError:
        return None


def _clean_name(value: Any) -> tuple[str | None, str | None]:
    """(name, problem): blank → None; text without control characters, at most MAX_NAME."""
    if value is None:
        return None, None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None, "the name must be text"
    name = " ".join(str(value).split())
    if _CONTROL.search(name):
        return None, "the name has control characters"
    if len(name) > MAX_NAME:
        return None, f"the name is longer than {MAX_NAME} characters"
    return name or None, None


def _check_source(source: str) -> str:
    source = " ".join(str(source or "").split())
    if not source or len(source) > MAX_SOURCE or _CONTROL.search(source):
        raise InvalidInput(
            f"The source must be 1–{MAX_SOURCE} characters of text.",
            errors=[_err("body", "source", "1–200 characters, no control characters")],
        )
    return source


def check_year(year: int) -> None:
    """InvalidInput (422) for a year outside the range calendars are stored for."""
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise InvalidInput(
            f"Calendars cover the years {YEAR_MIN}–{YEAR_MAX}, not {year}.",
            errors=[_err("path", "year", f"{YEAR_MIN}–{YEAR_MAX}")],
        )


def _deadline(session: Session, start: date, n: int) -> tuple[Deadline, WorkCalendar]:
    if n < 0:
        raise InvalidInput(
            "The number of working days must be 0 or more.",
            errors=[_err("query", "days", "0 or more")],
        )
    # Fetch the years the count will probably reach; fetch again if it went further.
    end = start.year + 1 + n // 200
    while True:
        calendar = work_calendar(session, start.year, end)
        try:
            result = calendar.add_working_days(start, n)
        except OverflowError:
            raise InvalidInput(
                "The deadline would be after the year 9999.",
                errors=[_err("query", "start", "too late")],
            ) from None
        if result.due.year <= end:
            return result, calendar
        end = result.due.year


def _by_year(rows: Iterable[CalendarRow]) -> dict[int, list[CalendarRow]]:
    out: dict[int, list[CalendarRow]] = {}
    for row in rows:
        out.setdefault(row.day.year, []).append(row)
    return out


def _err(where: str, field: str, message: str) -> dict[str, Any]:
    return {"in": where, "field": field, "messages": [message]}


def _errors_detail(errors: list[dict[str, Any]]) -> str:
    listed = "; ".join(
        f"{e.get('field') or 'row ' + str(e.get('row'))}: {', '.join(e['messages'])}"
        for e in errors[:5]
    )
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"The calendar is not valid, nothing loaded: {listed}{more}."


def _summary(problems: list[str]) -> str:
    return "; ".join(problems[:5]) + (
        f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    )
