"""Import the registry (CSV in UTF-8 or GB18030/GBK, or XLSX), streaming in bounded memory.

Rows are read and checked one by one (backend.domain.registry_rows), good ones COPY'd in
chunks to a staging table, and then the rest is set-based: duplicates within the file, points
outside the city outline, the upsert by USCC (only rows that differ are rewritten) and the
placement of every created or moved entity. A bad row is reported with its row number and
reasons and never leaves partial data; good rows are never lost because another row was bad.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.registry_rows import HeaderError, clean_row, map_headers
from backend.services import audit, placement
from backend.services.errors import InvalidInput
from geo import crs as geocrs

CHUNK = 20_000
MAX_REPORTED = 1_000  # rejected rows listed in full; the counts by reason stay complete
STAGE_COLUMNS = (
    "row_no",
    "uscc",
    "name",
    "kind",
    "status",
    "legal_representative",
    "phone",
    "registered_address",
    "business_address",
    "industry_code",
    "business_scope",
    "established_on",
    "last_changed_on",
    "credit_class",
    "lon",
    "lat",
)
ENTITY_COLUMNS = STAGE_COLUMNS[1:14]
Progress = Callable[[int], None]


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejected_rows: list[dict[str, Any]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    encoding: str | None = None
    placement: dict[str, int] = field(default_factory=dict)

    def reject(self, row_no: int, uscc: str | None, reasons: list[str]) -> None:
        self.rejected += 1
        for reason in reasons:
            self.reasons[reason.split(":")[0]] += 1
        if len(self.rejected_rows) < MAX_REPORTED:
            self.rejected_rows.append({"row": row_no, "uscc": uscc, "reasons": reasons})

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "rejected_rows": self.rejected_rows,
            "rejected_by_reason": dict(self.reasons),
            "encoding": self.encoding,
            "placement": self.placement,
        }


def import_registry(
    session: Session,
    source: Path | IO[bytes],
    *,
    filename: str = "",
    encoding: str | None = None,
    crs: str = "wgs84",
    progress: Progress | None = None,
) -> ImportReport:
    """A registry file: its header row is mapped, then its rows go through `import_rows`."""
    rows, used_encoding = _rows(source, filename or getattr(source, "name", ""), encoding)
    try:
        header = next(rows)
    except StopIteration:
        raise InvalidInput("The file is empty.") from None
    try:
        columns = map_headers(list(header))
    except HeaderError as exc:
        raise InvalidInput(str(exc)) from exc
    mapped = (
        (row_no, {canon: row[i] if i < len(row) else None for i, canon in columns.items()})
        for row_no, row in enumerate(rows, start=2)  # row 1 is the header
    )
    report = import_rows(
        session, mapped, source_name=filename or "upload", crs=crs, progress=progress
    )
    report.encoding = used_encoding
    return report


def import_rows(
    session: Session,
    rows: Iterable[tuple[int, dict[str, Any]]],
    *,
    source_name: str,
    crs: str = "wgs84",
    progress: Progress | None = None,
) -> ImportReport:
    """(row number, {canonical field: raw value}) pairs — from a file or from the change feed
    — checked, staged, upserted and placed; one report."""
    report = ImportReport()
    crs = geocrs.normalize_crs(crs)
    _create_stage(session)
    chunk: list[tuple[Any, ...]] = []
    for row_no, raw in rows:
        if all(v is None or str(v).strip() == "" for v in raw.values()):
            continue  # a blank line
        report.rows += 1
        cleaned = clean_row(raw)
        if not cleaned.ok:
            report.reject(
                row_no, cleaned.values.get("uscc") or _safe(raw.get("uscc")), cleaned.reasons
            )
            continue
        chunk.append(_stage_tuple(row_no, cleaned.values, crs))
        if len(chunk) >= CHUNK:
            _copy(session, chunk)
            chunk = []
            if progress:
                progress(report.rows)
    if chunk:
        _copy(session, chunk)
    if progress:
        progress(report.rows)
    _reject_in_database(session, report)
    _upsert(session, report)
    audit.record(
        session,
        "import",
        "entity_registry",
        source_name,
        changes={
            k: {"from": None, "to": v}
            for k, v in report.as_dict().items()
            if k in ("rows", "created", "updated", "unchanged", "rejected")
        },
    )
    return report


def _rows(
    source: Path | IO[bytes], filename: str, encoding: str | None
) -> tuple[Iterator[tuple[Any, ...]], str | None]:
    handle: IO[bytes] = source.open("rb") if isinstance(source, Path) else source
    head = handle.read(4)
    handle.seek(0)
    if head == b"PK\x03\x04" or filename.lower().endswith(".xlsx"):
        return _xlsx_rows(handle), None
    chosen = encoding or _detect_encoding(handle)
    try:
        codecs.lookup(chosen)
    except LookupError:
        raise InvalidInput(f"Unknown encoding {chosen!r}.") from None
    stream = io.TextIOWrapper(handle, encoding=chosen, errors="strict", newline="")
    reader = csv.reader(stream)

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            for row in reader:
                yield tuple(row)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidInput(
                f"The file cannot be read as {chosen} CSV near line {reader.line_num}: {exc}."
            ) from exc

    return rows(), chosen


def _detect_encoding(handle: IO[bytes]) -> str:
    """UTF-8 (with or without BOM) when the first 1 MB decodes as UTF-8, else GB18030 (a
    superset of GBK and GB2312, what Chinese registration systems export)."""
    sample = handle.read(1 << 20)
    handle.seek(0)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not merely a character cut at the sample's end
            return "gb18030"
    return "utf-8"


def _xlsx_rows(handle: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(handle, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InvalidInput(f"The XLSX file cannot be read: {exc}.") from exc
    try:
        yield from book.worksheets[0].iter_rows(values_only=True)
    finally:
        book.close()


def _create_stage(session: Session) -> None:
    session.execute(text("DROP TABLE IF EXISTS entity_stage"))
    session.execute(
        text(
            "CREATE TEMP TABLE entity_stage (row_no int PRIMARY KEY, uscc text, name text, "
            "kind text, status text, legal_representative text, phone text, "
            "registered_address text, business_address text, industry_code text, "
            "business_scope text, established_on date, last_changed_on date, credit_class text, "
            "lon float8, lat float8, rejected text) ON COMMIT DROP"
        )
    )


def _stage_tuple(row_no: int, v: dict[str, Any], crs: str) -> tuple[Any, ...]:
    lon, lat = v["lon"], v["lat"]
    if lon is not None:
        lon, lat = geocrs.to_cgcs2000(crs, lon, lat)
    return (row_no, *(v[c] for c in ENTITY_COLUMNS), lon, lat)


def _copy(session: Session, rows: list[tuple[Any, ...]]) -> None:
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(_copy_value(x) for x in row) + "\n")
    buf.seek(0)
    cursor = session.connection().connection.dbapi_connection.cursor()
    cursor.copy_expert(f"COPY entity_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN", buf)


def _reject_in_database(session: Session, report: ImportReport) -> None:
    """Duplicates within the file (the first occurrence wins) and points outside the city."""
    session.execute(
        text(
            "UPDATE entity_stage s SET rejected = 'duplicate in file (first at row ' || f.first "
            "|| ')' FROM (SELECT uscc, min(row_no) AS first FROM entity_stage GROUP BY uscc "
            "HAVING count(*) > 1) f WHERE s.uscc = f.uscc AND s.row_no > f.first"
        )
    )
    # The city outline when there is one, else the towns (a grid imported without it).
    outline = "city" if session.scalar(text("SELECT count(*) FROM city")) else "town"
    session.execute(
        text(
            f"UPDATE entity_stage s SET rejected = 'coordinates outside the city' "
            f"WHERE s.rejected IS NULL AND s.lon IS NOT NULL "
            f"AND EXISTS (SELECT 1 FROM {outline}) "
            f"AND NOT EXISTS (SELECT 1 FROM {outline} c WHERE ST_Intersects(c.geom, "
            f"ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4490)))"
        )
    )
    for r in session.execute(
        text(
            "SELECT row_no, uscc, rejected FROM entity_stage WHERE rejected IS NOT NULL "
            "ORDER BY row_no"
        )
    ):
        report.reject(r.row_no, r.uscc, [r.rejected])
    report.rejected_rows.sort(key=lambda item: item["row"])


def _upsert(session: Session, report: ImportReport) -> None:
    cols = ", ".join(ENTITY_COLUMNS)
    geom = "CASE WHEN s.lon IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4490) END"
    source = "CASE WHEN s.lon IS NULL THEN NULL ELSE 'registry_coordinates' END"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ENTITY_COLUMNS[1:])
    # A row without coordinates keeps a location the entity already has (e.g. verified on
    # site); registry coordinates replace only registry coordinates or nothing.
    differs = " OR ".join(f"m.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in ENTITY_COLUMNS[1:])
    session.execute(text("DROP TABLE IF EXISTS entity_touched"))
    session.execute(
        text(
            "CREATE TEMP TABLE entity_touched (id bigint PRIMARY KEY, "
            "created boolean NOT NULL) ON COMMIT DROP"
        )
    )
    session.execute(
        text(
            f"WITH up AS (INSERT INTO market_entity AS m ({cols}, geom, location_source) "
            f"SELECT {', '.join('s.' + c for c in ENTITY_COLUMNS)}, {geom}, {source} "
            f"FROM entity_stage s WHERE s.rejected IS NULL ORDER BY s.row_no "
            f"ON CONFLICT (uscc) DO UPDATE SET {updates}, "
            f"geom = CASE WHEN EXCLUDED.geom IS NULL OR m.location_source IN ('worker_verified', "
            f"'manual') THEN m.geom ELSE EXCLUDED.geom END, "
            f"location_source = CASE WHEN EXCLUDED.geom IS NULL OR m.location_source IN "
            f"('worker_verified', 'manual') THEN m.location_source ELSE EXCLUDED.location_source "
            f"END, version = m.version + 1, updated_at = now() "
            f"WHERE {differs} OR (EXCLUDED.geom IS NOT NULL AND m.location_source IS DISTINCT "
            f"FROM 'worker_verified' AND m.location_source IS DISTINCT FROM 'manual' "
            f"AND NOT ST_Equals(m.geom, EXCLUDED.geom)) OR (m.geom IS NULL AND EXCLUDED.geom "
            f"IS NOT NULL) "
            f"RETURNING m.id, (xmax = 0) AS created) "
            f"INSERT INTO entity_touched SELECT id, created FROM up"
        )
    )
    counts = session.execute(
        text(
            "SELECT count(*) FILTER (WHERE created) AS created, "
            "count(*) FILTER (WHERE NOT created) AS updated, "
            "(SELECT count(*) FROM entity_stage WHERE rejected IS NULL) AS accepted "
            "FROM entity_touched"
        )
    ).one()
    report.created, report.updated = counts.created, counts.updated
    for action, created in (("create", True), ("update", False)):
        audit.record_from_query(
            session,
            action,
            "entity",
            "SELECT t.id AS object_id, jsonb_build_object('source', jsonb_build_object("
            "'from', NULL, 'to', 'registry import'), 'uscc', jsonb_build_object('from', NULL, "
            "'to', m.uscc)) AS changes FROM entity_touched t JOIN market_entity m "
            "ON m.id = t.id WHERE t.created = :created",
            {"created": created},
        )
    report.unchanged = counts.accepted - counts.created - counts.updated
    touched = counts.created + counts.updated
    if touched > 50_000:
        report.placement = placement.place_all(session)
    elif touched:
        moves = placement.place_matching(session, "{e}.id IN (SELECT id FROM entity_touched)")
        report.placement = {"moved": sum(m["entities"] for m in moves)}


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _safe(value: Any) -> str | None:
    return None if value is None else str(value)[:40]
