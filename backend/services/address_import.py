"""Import the standard address library (标准地址, the police door-plate addresses) from CSV
(UTF-8 or GB18030) or XLSX, streaming, like the registry: rows checked one by one, good ones
COPY'd to a staging table, then duplicates, points outside the city and the upsert by
normalised address in SQL. Afterwards `geocode_entities` re-matches the registry."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services.entity_import import ImportReport
from backend.services.errors import InvalidInput
from backend.services.tabular import ChunkedCopy, read_table
from geo import crs as geocrs
from geo.address import parse_address

CHUNK = 20_000
MAX_TEXT = 300

#: canonical column → accepted headers (compared after stripping spaces, case-insensitive)
HEADERS: dict[str, tuple[str, ...]] = {
    "full_text": ("标准地址", "地址", "详细地址", "地址名称", "full_text", "address"),
    "lon": ("经度", "lon", "lng", "longitude", "x"),
    "lat": ("纬度", "lat", "latitude", "y"),
    "source_id": ("地址编码", "标准地址编码", "编码", "source_id", "code", "address_code"),
}
_STAGE = (
    "row_no",
    "source_id",
    "full_text",
    "normalized",
    "match_key",
    "town",
    "community",
    "road",
    "house_number",
    "building",
    "lon",
    "lat",
)
Progress = Callable[[int], None]


def map_address_headers(header: list[Any]) -> dict[int, str]:
    """Column index → canonical name; full_text, lon and lat are required."""
    lookup = {alias.lower(): canon for canon, aliases in HEADERS.items() for alias in aliases}
    columns: dict[int, str] = {}
    for i, name in enumerate(header):
        key = "".join(str(name or "").split()).lstrip("\ufeff").lower()
        if key in lookup and lookup[key] not in columns.values():
            columns[i] = lookup[key]
    missing = [c for c in ("full_text", "lon", "lat") if c not in columns.values()]
    if missing:
        accepted = "; ".join(f"{c}: {' / '.join(HEADERS[c])}" for c in missing)
        raise InvalidInput(f"Missing columns in the header row ({accepted}).")
    return columns


def import_standard_addresses(
    session: Session,
    source: Path | IO[bytes],
    *,
    filename: str = "",
    encoding: str | None = None,
    crs: str = "wgs84",
    progress: Progress | None = None,
) -> ImportReport:
    """Upsert the library by normalised address; the report has the registry import's shape."""
    crs = geocrs.normalize_crs(crs)
    rows, used_encoding = read_table(source, filename or getattr(source, "name", ""), encoding)
    try:
        header = next(rows)
    except StopIteration:
        raise InvalidInput("The file is empty.") from None
    columns = map_address_headers(list(header))
    report = ImportReport(encoding=used_encoding)
    session.execute(text("DROP TABLE IF EXISTS address_stage"))
    session.execute(
        text(
            "CREATE TEMP TABLE address_stage (row_no int PRIMARY KEY, source_id text, "
            "full_text text, normalized text, match_key text, town text, community text, "
            "road text, house_number text, building text, lon float8, lat float8, "
            "rejected text) ON COMMIT DROP"
        )
    )
    stage = ChunkedCopy(session, "address_stage", _STAGE, progress, CHUNK)
    for row_no, row in enumerate(rows, start=2):
        raw = {canon: row[i] if i < len(row) else None for i, canon in columns.items()}
        if all(v is None or str(v).strip() == "" for v in raw.values()):
            continue
        report.rows += 1
        staged, reasons = _check(row_no, raw, crs)
        if reasons:
            report.reject(row_no, None, reasons)
            continue
        stage.add(staged, report.rows)
    stage.flush(report.rows)
    _reject_in_database(session, report)
    _upsert(session, report)
    report.record(session, "standard_address_library", filename or "upload")
    return report


def _check(row_no: int, raw: dict[str, Any], crs: str) -> tuple[tuple[Any, ...], list[str]]:
    reasons = []
    full_text = " ".join(str(raw.get("full_text") or "").split())
    if not full_text:
        reasons.append("address: empty")
    elif len(full_text) > MAX_TEXT:
        reasons.append(f"address: longer than {MAX_TEXT} characters")
    elif any(ord(ch) < 32 or 0xD800 <= ord(ch) < 0xE000 for ch in full_text):
        reasons.append("address: control characters")
    coords: list[float] = []
    for name in ("lon", "lat"):
        value = raw.get(name)
        try:
            number = float(str(value).strip())
        except (TypeError, ValueError):
            reasons.append(f"{name}: not a number ({str(value)[:20]!r})")
            continue
        if not math.isfinite(number):
            reasons.append(f"{name}: not a number")
        coords.append(number)
    source_id = str(raw.get("source_id") or "").strip()[:64] or None
    if reasons:
        return (), reasons
    parsed = parse_address(full_text)
    if not parsed.normalized:
        return (), ["address: nothing left after normalisation"]
    try:
        lon, lat = geocrs.to_cgcs2000(crs, coords[0], coords[1])
    except ValueError as exc:
        return (), [f"coordinates: {exc}"]
    c = parsed.components
    return (
        row_no,
        source_id,
        full_text,
        parsed.normalized,
        parsed.key,
        c["town"],
        c["community"],
        c["road"],
        c["house_number"],
        c["building"],
        lon,
        lat,
    ), []


def _reject_in_database(session: Session, report: ImportReport) -> None:
    session.execute(
        text(
            "UPDATE address_stage s SET rejected = 'duplicate in file (first at row ' || f.first "
            "|| ')' FROM (SELECT normalized, min(row_no) AS first FROM address_stage "
            "GROUP BY normalized HAVING count(*) > 1) f "
            "WHERE s.normalized = f.normalized AND s.row_no > f.first"
        )
    )
    outline = "city" if session.scalar(text("SELECT count(*) FROM city")) else "town"
    session.execute(
        text(
            f"UPDATE address_stage s SET rejected = 'coordinates outside the city' "
            f"WHERE s.rejected IS NULL AND EXISTS (SELECT 1 FROM {outline}) "
            f"AND NOT EXISTS (SELECT 1 FROM {outline} c WHERE ST_Intersects(c.geom, "
            f"ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4490)))"
        )
    )
    for r in session.execute(
        text("SELECT row_no, rejected FROM address_stage WHERE rejected IS NOT NULL")
    ):
        report.reject(r.row_no, None, [r.rejected])
    report.rejected_rows.sort(key=lambda item: item["row"])


def _upsert(session: Session, report: ImportReport) -> None:
    cols = ("source_id", "full_text", "match_key", "town", "community", "road", "house_number")
    cols += ("building",)
    geom = "ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4490)"
    counts = session.execute(
        text(
            f"WITH up AS (INSERT INTO standard_address AS a (normalized, {', '.join(cols)}, geom) "
            f"SELECT s.normalized, {', '.join('s.' + c for c in cols)}, {geom} "
            f"FROM address_stage s WHERE s.rejected IS NULL ORDER BY s.row_no "
            f"ON CONFLICT (normalized) DO UPDATE SET "
            f"{', '.join(f'{c} = EXCLUDED.{c}' for c in cols)}, geom = EXCLUDED.geom, "
            f"updated_at = now() WHERE "
            f"{' OR '.join(f'a.{c} IS DISTINCT FROM EXCLUDED.{c}' for c in cols)} "
            f"OR a.geom IS DISTINCT FROM EXCLUDED.geom "
            f"RETURNING (xmax = 0) AS created) "
            f"SELECT count(*) FILTER (WHERE created) AS created, "
            f"count(*) FILTER (WHERE NOT created) AS updated, "
            f"(SELECT count(*) FROM address_stage WHERE rejected IS NULL) AS accepted FROM up"
        )
    ).one()
    report.created, report.updated = counts.created, counts.updated
    report.unchanged = counts.accepted - counts.created - counts.updated
