"""Write audit events in the same transaction as the change they record.

Who acts (user, role, client address, device location, request id) travels with the Session
in `session.info["actor"]`, set by whoever opens the session (the web layer per request, the
CLI per command), so services record events without knowing about HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

ACTOR_KEY = "actor"


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    role: str
    client_addr: str | None = None
    request_id: str | None = None
    device_lon: float | None = None  # CGCS2000, when the phone sent its position
    device_lat: float | None = None


SYSTEM = Actor(None, "system", "system")


def set_actor(session: Session, actor: Actor) -> None:
    session.info[ACTOR_KEY] = actor


def actor_of(session: Session) -> Actor:
    return session.info.get(ACTOR_KEY, SYSTEM)


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Changed fields only, as {field: {"from": old, "to": new}}."""
    before, after = before or {}, after or {}
    out = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old != new:
            out[key] = {"from": _plain(old), "to": _plain(new)}
    return out


def record(
    session: Session,
    action: str,
    object_type: str,
    object_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    *,
    changes: dict[str, Any] | None = None,
) -> None:
    """One event for one changed object (flushes pending ORM changes first, in order)."""
    session.flush()
    session.execute(
        text(
            f"INSERT INTO audit_event ({_COLUMNS}) VALUES ({_ACTOR_VALUES}, "
            ":action, :object_type, :object_id, CAST(:changes AS jsonb))"
        ),
        {
            **_actor_params(actor_of(session)),
            "action": action,
            "object_type": object_type,
            "object_id": str(object_id),
            "changes": json.dumps(
                changes if changes is not None else diff(before, after),
                ensure_ascii=False,
                default=str,
            ),
        },
    )


def record_from_query(
    session: Session,
    action: str,
    object_type: str,
    rows_sql: str,
    params: dict[str, Any] | None = None,
) -> int:
    """One event per row of `rows_sql` (columns: object_id, changes jsonb), set-based."""
    result = session.execute(
        text(
            f"INSERT INTO audit_event ({_COLUMNS}) SELECT {_ACTOR_VALUES}, "
            f":action, :object_type, r.object_id::text, r.changes FROM ({rows_sql}) r"
        ),
        {
            **(params or {}),
            **_actor_params(actor_of(session)),
            "action": action,
            "object_type": object_type,
        },
    )
    return result.rowcount


def insert_events_sql(source: str, object_id: str, changes: str) -> str:
    """`INSERT … SELECT` of one event per row of `source` (e.g. a data-modifying CTE), so that
    a change and its event take one round trip; bind `event_params(session, …)` with it.
    `object_id` and `changes` (jsonb) are SQL expressions over `source`."""
    return (
        f"INSERT INTO audit_event ({_COLUMNS}) SELECT {_actor_values('ev_')}, "
        f":ev_action, :ev_object_type, ({object_id})::text, {changes} FROM {source}"
    )


def event_params(session: Session, action: str, object_type: str) -> dict[str, Any]:
    """The parameters of `insert_events_sql` (prefixed, not to meet the statement's own)."""
    params = {**_actor_params(actor_of(session)), "action": action, "object_type": object_type}
    return {f"ev_{key}": value for key, value in params.items()}


_COLUMNS = (
    "actor_user_id, actor_username, actor_role, client_addr, request_id, "
    "device_location, action, object_type, object_id, changes"
)


def _actor_values(prefix: str = "") -> str:
    """The actor's columns as bind parameters (named as `_actor_params`, with `prefix`)."""
    p = prefix
    return (
        f":{p}actor_user_id, :{p}actor_username, :{p}actor_role, :{p}client_addr, "
        f":{p}request_id, CASE WHEN CAST(:{p}lon AS float8) IS NULL THEN NULL "
        f"ELSE ST_SetSRID(ST_MakePoint(:{p}lon, :{p}lat), 4490) END"
    )


_ACTOR_VALUES = _actor_values()


def _actor_params(actor: Actor) -> dict[str, Any]:
    return {
        "actor_user_id": actor.user_id,
        "actor_username": actor.username,
        "actor_role": actor.role,
        "client_addr": actor.client_addr,
        "request_id": actor.request_id,
        "lon": actor.device_lon,
        "lat": actor.device_lat,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def list_events(
    session: Session,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """Events newest first; `actor` is a username or a user id."""
    where, params = ["true"], {}
    for column, value in (
        ("object_type", object_type),
        ("object_id", object_id),
        ("action", action),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if actor is not None:
        where.append("(actor_username = :actor OR actor_user_id::text = :actor)")
        params["actor"] = actor
    if since is not None:
        where.append("occurred_at >= :since")
        params["since"] = since
    if until is not None:
        where.append("occurred_at < :until")
        params["until"] = until
    clause = " AND ".join(where)
    total = session.scalar(text(f"SELECT count(*) FROM audit_event WHERE {clause}"), params)
    rows = (
        session.execute(
            text(
                f"SELECT id, occurred_at, actor_user_id, actor_username, actor_role, client_addr, "
                f"ST_AsGeoJSON(device_location, 7)::json AS device_location, action, "
                f"object_type, object_id, changes, request_id FROM audit_event WHERE {clause} "
                f"ORDER BY occurred_at DESC, id DESC OFFSET :offset LIMIT :limit"
            ),
            {**params, "offset": offset, "limit": limit},
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows], int(total or 0)
