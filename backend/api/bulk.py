"""Bulk actions where each item succeeds or fails on its own, on its own savepoint."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from backend.services.errors import ServiceError


def each_on_its_own(
    session: Session, refs: Iterable[dict[str, Any]], act: Callable[[dict[str, Any]], Any]
) -> list[dict[str, Any]]:
    """`act(ref)` for every `{id, version}`; per item: status 200 and the result, or the
    error's status and detail (nothing of a failed item is kept)."""
    results = []
    for ref in refs:
        savepoint = session.begin_nested()
        try:
            row = act(ref)
            savepoint.commit()
            results.append({"id": ref["id"], "status": 200, "result": row})
        except ServiceError as exc:
            savepoint.rollback()
            results.append({"id": ref["id"], "status": exc.status, "detail": exc.detail})
    return results
