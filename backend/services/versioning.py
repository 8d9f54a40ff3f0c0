"""Optimistic locking, the one way (DESIGN.md §5): a change names the version it was based on,
and the conditional UPDATE applies only if nobody changed the row in between."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services.errors import PreconditionFailed, PreconditionRequired


def require_version(expected: int | None, what: str) -> int:
    if expected is None:
        raise PreconditionRequired(f"Send If-Match with the {what}'s ETag to change it.")
    return expected


def versioned_update(
    session: Session,
    table: str,
    object_id: int,
    expected: int | None,
    set_sql: str,
    params: dict[str, Any],
    what: str,
) -> int:
    """`UPDATE table SET <set_sql>, version + 1 WHERE id AND version match`; the new version,
    or 412 when the row has moved on (428 when no version was sent)."""
    version = require_version(expected, what)
    prefix = f"{set_sql}, " if set_sql else ""
    new = session.scalar(
        text(
            f"UPDATE {table} SET {prefix}version = version + 1, updated_at = now() "
            f"WHERE id = :id AND version = :v RETURNING version"
        ),
        {**params, "id": object_id, "v": version},
    )
    if new is None:
        raise PreconditionFailed(
            f"{what.capitalize()} {object_id} has changed since version {version}; reload it."
        )
    return int(new)
