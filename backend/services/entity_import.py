"""Import the registry (CSV in UTF-8 or GB18030/GBK, or XLSX), streaming in bounded memory.

Rows are read and checked one by one (backend.domain.registry_rows), good ones COPY'd in
chunks to a staging table, and then the rest is set-based: duplicates within the file, points
outside the city outline, the upsert by USCC (only rows that differ are rewritten) and the
placement of every created or moved entity. A bad row is reported with its row number and
reasons and never leaves partial data; good rows are never lost because another row was bad.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.registry_rows import HeaderError, clean_row, map_headers
from backend.services import audit, geocoding, placement
from backend.services.errors import InvalidInput
from backend.services.tabular import ChunkedCopy, read_table
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
    *geocoding.INPUT_COLUMNS,
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

    def record(self, session: Session, object_type: str, name: str) -> None:
        """The import's own audit event, with its counts."""
        counts = ("rows", "created", "updated", "unchanged", "rejected")
        audit.record(
            session,
            "import",
            object_type,
            name,
            changes={k: {"from": None, "to": getattr(self, k)} for k in counts},
        )

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
    rows, used_encoding = read_table(source, filename or getattr(source, "name", ""), encoding)
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
    stage = ChunkedCopy(session, "entity_stage", STAGE_COLUMNS, progress, CHUNK)
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
        stage.add(_stage_tuple(row_no, cleaned.values, crs), report.rows)
    stage.flush(report.rows)
    _reject_in_database(session, report)
    geocoding.match_table(session, "entity_stage", key="row_no", where="s.rejected IS NULL")
    _upsert(session, report)
    report.record(session, "entity_registry", source_name)
    return report


def _create_stage(session: Session) -> None:
    session.execute(text("DROP TABLE IF EXISTS entity_stage"))
    session.execute(
        text(
            "CREATE TEMP TABLE entity_stage (row_no int PRIMARY KEY, uscc text, name text, "
            "kind text, status text, legal_representative text, phone text, "
            "registered_address text, business_address text, industry_code text, "
            "business_scope text, established_on date, last_changed_on date, credit_class text, "
            f"lon float8, lat float8, {geocoding.INPUT_DDL}, {geocoding.RESULT_DDL}, "
            "rejected text, address_changed boolean) ON COMMIT DROP"
        )
    )


def _stage_tuple(row_no: int, v: dict[str, Any], crs: str) -> tuple[Any, ...]:
    lon, lat = v["lon"], v["lat"]
    if lon is not None:
        lon, lat = geocrs.to_cgcs2000(crs, lon, lat)
    address = v["business_address"] or v["registered_address"]  # 经营场所 is where it works
    return (row_no, *(v[c] for c in ENTITY_COLUMNS), lon, lat, *geocoding.address_fields(address))


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


# The location an import brings: registry coordinates, else the matched standard address,
# else none ('unmatched'); and how far the coordinates are from the matched address.
_INCOMING = """
SELECT s.*, CASE WHEN s.lon IS NOT NULL THEN ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4490)
                 ELSE s.match_geom END AS geom,
       CASE WHEN s.lon IS NOT NULL THEN 'registry_coordinates'
            WHEN s.match_id IS NOT NULL THEN 'address_match' ELSE 'unmatched' END AS source,
       CASE WHEN s.lon IS NOT NULL THEN ST_DistanceSphere(
                ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4490), s.match_geom) END AS disagreement
FROM entity_stage s WHERE s.rejected IS NULL
"""

# Whether the incoming location replaces the entity's: never one verified on site or set by
# hand; otherwise when the entity has none, when the address changed (the old point belongs
# to the old address), when registry coordinates come, or a fresh address match replaces an
# old one.
_TAKE = """(COALESCE(m.location_source, '') NOT IN ('worker_verified', 'manual') AND (
    m.location_source IS NULL OR m.location_source = 'unmatched'
    OR m.registered_address IS DISTINCT FROM EXCLUDED.registered_address
    OR m.business_address IS DISTINCT FROM EXCLUDED.business_address
    OR EXCLUDED.location_source = 'registry_coordinates'
    OR (m.location_source = 'address_match' AND EXCLUDED.location_source = 'address_match')))"""


def _upsert(session: Session, report: ImportReport) -> None:
    # remembered before the upsert: whose address this import changes (首检 again)
    session.execute(
        text(
            "UPDATE entity_stage s SET address_changed = (m.registered_address IS DISTINCT "
            "FROM s.registered_address OR m.business_address IS DISTINCT FROM s.business_address) "
            "FROM market_entity m WHERE m.uscc = s.uscc AND s.rejected IS NULL"
        )
    )
    cols = ", ".join(ENTITY_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ENTITY_COLUMNS[1:])
    differs = " OR ".join(
        f"m.{c} IS DISTINCT FROM EXCLUDED.{c}"
        for c in (*ENTITY_COLUMNS[1:], "address_match_id", "address_match_score")
    )
    # the distance from a kept location to the (new) matched address
    kept_disagreement = (
        "CASE WHEN m.location_source = 'address_match' THEN NULL ELSE (SELECT "
        "ST_DistanceSphere(m.geom, a.geom) FROM standard_address a "
        "WHERE a.id = EXCLUDED.address_match_id) END"
    )
    session.execute(text("DROP TABLE IF EXISTS entity_touched"))
    session.execute(
        text(
            "CREATE TEMP TABLE entity_touched (id bigint PRIMARY KEY, "
            "created boolean NOT NULL) ON COMMIT DROP"
        )
    )
    session.execute(
        text(
            f"WITH up AS (INSERT INTO market_entity AS m ({cols}, geom, location_source, "
            f"address_match_id, address_match_score, location_disagreement_m) "
            f"SELECT {', '.join('s.' + c for c in ENTITY_COLUMNS)}, s.geom, s.source, "
            f"s.match_id, s.match_score, s.disagreement FROM ({_INCOMING}) s ORDER BY s.row_no "
            f"ON CONFLICT (uscc) DO UPDATE SET {updates}, "
            f"geom = CASE WHEN {_TAKE} THEN EXCLUDED.geom ELSE m.geom END, "
            f"location_source = CASE WHEN {_TAKE} THEN EXCLUDED.location_source "
            f"ELSE m.location_source END, "
            f"location_accuracy_m = CASE WHEN {_TAKE} THEN NULL ELSE m.location_accuracy_m END, "
            f"address_match_id = EXCLUDED.address_match_id, "
            f"address_match_score = EXCLUDED.address_match_score, "
            f"location_disagreement_m = CASE WHEN {_TAKE} THEN EXCLUDED.location_disagreement_m "
            f"ELSE {kept_disagreement} END, "
            f"version = m.version + 1, updated_at = now() "
            f"WHERE {differs} OR ({_TAKE} AND (m.location_source IS DISTINCT FROM "
            f"EXCLUDED.location_source OR m.geom IS DISTINCT FROM EXCLUDED.geom)) "
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
    # an entity whose location went away (an address now unmatched) leaves its cell
    session.execute(
        text(
            "DELETE FROM entity_placement p USING entity_touched t, market_entity e "
            "WHERE p.entity_id = t.id AND e.id = t.id AND e.geom IS NULL"
        )
    )
    if touched > 50_000:
        report.placement = placement.place_all(session)
    elif touched:
        moves = placement.place_matching(session, "{e}.id IN (SELECT id FROM entity_touched)")
        report.placement = {"moved": sum(m["entities"] for m in moves)}


def _safe(value: Any) -> str | None:
    return None if value is None else str(value)[:40]


def touched(session: Session) -> dict[str, list[int]]:
    """After `import_rows`, in its transaction: the ids it created, and those whose address
    it changed (the registration feed starts a first inspection for both)."""
    rows = session.execute(
        text(
            "SELECT t.id, t.created, COALESCE(bool_or(s.address_changed), false) AS moved "
            "FROM entity_touched t JOIN market_entity m ON m.id = t.id "
            "LEFT JOIN entity_stage s ON s.uscc = m.uscc GROUP BY t.id, t.created"
        )
    ).all()
    return {
        "created": [r.id for r in rows if r.created],
        "address_changed": [r.id for r in rows if not r.created and r.moved],
    }
