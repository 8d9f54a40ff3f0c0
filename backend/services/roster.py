"""Which grid workers walk which cell (primary + backups), queryable both ways."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services import audit
from backend.services.errors import Conflict, InvalidInput, NotFound
from backend.services.scope import Scope, area_clause, bound, user_clause


def cell_workers(session: Session, cell_code: str, scope: Scope) -> dict[str, Any]:
    _require_cell(session, cell_code, scope)
    rows = (
        session.execute(
            text(
                "SELECT w.user_id, u.username, u.display_name, w.duty, w.assigned_at, u.is_active "
                "FROM cell_worker w JOIN app_user u ON u.id = w.user_id "
                "WHERE w.cell_code = :c ORDER BY w.duty DESC, u.username"
            ),
            {"c": cell_code},
        )
        .mappings()
        .all()
    )
    primary = next((dict(r) for r in rows if r["duty"] == "primary"), None)
    return {
        "cell_code": cell_code,
        "primary": primary,
        "backups": [dict(r) for r in rows if r["duty"] == "backup"],
    }


def worker_cells(session: Session, user_id: int, scope: Scope) -> list[dict[str, Any]]:
    visible = session.scalar(
        bound(
            f"SELECT 1 FROM app_user u WHERE u.id = :id AND {user_clause(scope)}",
            {**scope.params, "id": user_id},
        )
    )
    if visible is None:
        raise NotFound(f"No user {user_id}.")
    rows = (
        session.execute(
            bound(
                f"SELECT w.cell_code, c.name, c.community_code, c.town_code, w.duty, "
                f"w.assigned_at FROM cell_worker w JOIN grid_cell c ON c.code = w.cell_code "
                f"WHERE w.user_id = :id AND {area_clause(scope, 'cell', 'c')} "
                f"ORDER BY w.duty DESC, w.cell_code",
                {**scope.params, "id": user_id},
            )
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


def set_cell_workers(
    session: Session, cell_code: str, primary: int | None, backups: list[int], scope: Scope
) -> dict[str, Any]:
    """Replace a cell's roster; one audit event when it changes, nothing when it does not."""
    _require_cell(session, cell_code, scope)
    if primary is not None and primary in backups:
        raise InvalidInput("The primary worker cannot also be a backup of the same cell.")
    if len(set(backups)) != len(backups):
        raise InvalidInput("A backup worker is listed twice.")
    wanted = ([primary] if primary is not None else []) + backups
    if wanted:
        _require_workers(session, wanted, primary, scope)
    before = _roster(session, cell_code)
    after = {"primary": primary, "backups": sorted(backups)}
    if before == after:
        return cell_workers(session, cell_code, scope)
    if primary is not None:
        elsewhere = session.execute(
            bound(
                f"SELECT w.cell_code, {area_clause(scope, 'cell', 'c')} AS visible "
                f"FROM cell_worker w JOIN grid_cell c ON c.code = w.cell_code "
                f"WHERE w.user_id = :u AND w.duty = 'primary' AND w.cell_code <> :c",
                {**scope.params, "u": primary, "c": cell_code},
            )
        ).first()
        if elsewhere:
            # name the other cell only when the caller may see it: no leak across territory
            where = (
                f"cell {elsewhere.cell_code}"
                if elsewhere.visible
                else "a cell outside your territory"
            )
            raise Conflict(
                f"Worker {primary} is already the primary worker of {where}; "
                f"make them a backup there first."
            )
    session.execute(text("DELETE FROM cell_worker WHERE cell_code = :c"), {"c": cell_code})
    rows = [{"c": cell_code, "u": u, "d": "primary" if u == primary else "backup"} for u in wanted]
    if rows:
        session.execute(
            text("INSERT INTO cell_worker (cell_code, user_id, duty) VALUES (:c, :u, :d)"), rows
        )
    audit.record(session, "set_workers", "cell_roster", cell_code, before, after)
    return cell_workers(session, cell_code, scope)


def _require_workers(
    session: Session, wanted: list[int], primary: int | None, scope: Scope
) -> None:
    """Every id must be a user the caller may see (else 404, as for any out-of-scope object,
    so a dispatcher cannot probe other towns' accounts) and an active grid worker (else 422)."""
    found = dict(
        session.execute(
            bound(
                f"SELECT u.id, u.role = 'grid_worker' AND u.is_active FROM app_user u "
                f"WHERE u.id = ANY(:ids) AND {user_clause(scope)}",
                {**scope.params, "ids": wanted},
            )
        ).all()
    )
    unseen = [i for i in wanted if i not in found]
    if unseen:
        raise NotFound(f"No user {', '.join(map(str, unseen))}.")
    bad = [i for i in wanted if not found[i]]
    if bad:
        raise InvalidInput(
            f"Not active grid workers: {', '.join(map(str, bad))}.",
            errors=[
                {
                    "in": "json",
                    "field": "backups" if primary not in bad else "primary",
                    "messages": ["not an active worker"],
                }
            ],
        )


def _roster(session: Session, cell_code: str) -> dict[str, Any]:
    rows = session.execute(
        text("SELECT user_id, duty FROM cell_worker WHERE cell_code = :c"), {"c": cell_code}
    ).all()
    return {
        "primary": next((r.user_id for r in rows if r.duty == "primary"), None),
        "backups": sorted(r.user_id for r in rows if r.duty == "backup"),
    }


def _require_cell(session: Session, cell_code: str, scope: Scope) -> None:
    found = session.scalar(
        bound(
            f"SELECT 1 FROM grid_cell t WHERE t.code = :c AND {area_clause(scope, 'cell')}",
            {**scope.params, "c": cell_code},
        )
    )
    if found is None:
        raise NotFound(f"No cell with code {cell_code!r}.")
