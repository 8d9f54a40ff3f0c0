"""Photos from the phone: checked by content (backend.domain.photos), stored once per content
(SHA-256) behind the storage interface, recorded with their EXIF time and position."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.photos import PhotoError, inspect_photo
from backend.services.errors import InvalidInput, NotFound
from backend.services.storage import Storage

MAX_PHOTO_BYTES = 10 * 2**20

_COLUMNS = (
    "id, sha256, mime, size_bytes, width, height, taken_at, ST_X(exif_geom) AS exif_lon, "
    "ST_Y(exif_geom) AS exif_lat, uploaded_at"
)


def store_photo(
    session: Session, storage: Storage, uploader_id: int, data: bytes
) -> tuple[bool, dict[str, Any]]:
    """(created, attachment). The same bytes from the same person are the same attachment."""
    try:
        info = inspect_photo(data, max_bytes=MAX_PHOTO_BYTES)
    except PhotoError as exc:
        raise InvalidInput(f"Not accepted: {exc}.") from exc
    existing = _find(session, uploader_id, info.sha256)
    if existing is not None:
        return False, existing
    key = storage.put(data, info.sha256)
    new_id = session.scalar(
        text(
            "INSERT INTO attachment (sha256, mime, size_bytes, width, height, taken_at, "
            "exif_geom, storage_key, uploaded_by) VALUES (:sha, :mime, :size, :w, :h, :taken, "
            "CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL "
            "ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) END, :key, :u) "
            "ON CONFLICT (uploaded_by, sha256) DO NOTHING RETURNING id"
        ),
        {
            "sha": info.sha256,
            "mime": info.mime,
            "size": info.size_bytes,
            "w": info.width,
            "h": info.height,
            "taken": info.taken_at,
            "lon": info.lon,
            "lat": info.lat,
            "key": key,
            "u": uploader_id,
        },
    )
    found = _find(session, uploader_id, info.sha256)
    assert found is not None
    return new_id is not None, found


def _find(session: Session, uploader_id: int, sha256: str) -> dict[str, Any] | None:
    row = (
        session.execute(
            text(f"SELECT {_COLUMNS} FROM attachment WHERE uploaded_by = :u AND sha256 = :sha"),
            {"u": uploader_id, "sha": sha256},
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def readable(session: Session, attachment_id: int, principal: Any) -> dict[str, Any]:
    """An attachment the caller may see: its uploader; city-wide roles; a dispatcher when it
    is evidence of a task in its territory; an officer when it is evidence of a referral in its
    inbox. Anything else does not exist (404)."""
    from backend.services.referrals import scope_clause
    from backend.services.scope import bound, scope_of
    from backend.services.tasks import task_scope

    role = principal.role
    evidence = (
        "EXISTS (SELECT 1 FROM submission s JOIN patrol_task t ON t.id = s.task_id "
        "WHERE a.id = ANY(s.attachment_ids) AND {clause})"
    )
    params: dict[str, Any] = {"id": attachment_id, "me": principal.user_id}
    if role in ("admin", "auditor", "city_dispatcher"):
        clause = "true"
    elif role == "department_officer":
        inbox, extra = scope_clause(principal)
        params.update(extra)
        clause = evidence.format(
            clause=f"EXISTS (SELECT 1 FROM finding f JOIN referral r ON r.finding_id = f.id "
            f"WHERE f.submission_id = s.id AND {inbox})"
        )
    elif role in ("town_dispatcher", "community_dispatcher"):
        scope = scope_of(principal)
        params.update(scope.params)
        clause = evidence.format(clause=task_scope(scope))
    else:
        clause = "false"
    row = (
        session.execute(
            bound(
                f"SELECT {_COLUMNS}, storage_key FROM attachment a WHERE a.id = :id "
                f"AND (a.uploaded_by = :me OR {clause})",
                params,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No attachment {attachment_id}.")
    return dict(row)
