"""Photos from the phone: checked by content (backend.domain.photos), stored once per content
(SHA-256) behind the storage interface, recorded with their EXIF time and position."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.photos import PhotoError, inspect_photo
from backend.services.errors import InvalidInput
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
