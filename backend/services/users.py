"""Accounts: create, read, update, disable; every change audited in its transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from backend.models import ROLES, AppUser
from backend.services import audit
from backend.services.auth import hash_password, revoke_user_sessions
from backend.services.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from backend.services.scope import Scope, bound, user_clause
from backend.services.versioning import require_version, versioned_update

AUDITED_FIELDS = (
    "username",
    "display_name",
    "role",
    "town_code",
    "community_code",
    "department_code",
    "phone",
    "is_active",
)
UPDATABLE = (
    "display_name",
    "role",
    "town_code",
    "community_code",
    "department_code",
    "phone",
    "is_active",
    "password",
)


def snapshot(user: AppUser) -> dict[str, Any]:
    return {f: getattr(user, f) for f in AUDITED_FIELDS}


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    *,
    display_name: str = "",
    town_code: str | None = None,
    community_code: str | None = None,
    department_code: str | None = None,
    phone: str | None = None,
) -> AppUser:
    if session.scalar(select(AppUser.id).where(AppUser.username == username)) is not None:
        raise Conflict(f"Username {username!r} is taken.")
    fields = _territory(session, role, town_code, community_code, department_code)
    user = AppUser(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        phone=phone,
        **fields,
    )
    session.add(user)
    session.flush()
    audit.record(session, "create", "user", user.id, None, snapshot(user))
    return user


def update_user(
    session: Session,
    user_id: int,
    expected_version: int | None,
    changes: dict[str, Any],
    scope: Scope,
) -> AppUser:
    """Apply `changes` if the caller saw the current version (optimistic locking)."""
    user = get_user(session, user_id, scope)
    require_version(expected_version, "user")
    before = snapshot(user)
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(sorted(unknown))}.")
    merged = {**before, **{k: v for k, v in changes.items() if k != "password"}}
    territory = _territory(
        session,
        merged["role"],
        merged["town_code"],
        merged["community_code"],
        merged["department_code"],
    )
    values: dict[str, Any] = {
        **territory,
        "display_name": merged["display_name"],
        "phone": merged["phone"],
        "is_active": merged["is_active"],
    }
    if "password" in changes:
        values["password_hash"] = hash_password(changes["password"])
    sets = ", ".join(f"{k} = :{k}" for k in values)
    versioned_update(session, "app_user", user_id, expected_version, sets, values, "user")
    session.expire(user)
    after = snapshot(user)
    change_set = audit.diff(before, after)
    if "password_hash" in values:
        change_set["password"] = {"from": "***", "to": "***"}
    audit.record(session, "update", "user", user_id, changes=change_set)
    if before["is_active"] and not after["is_active"]:
        revoke_user_sessions(session, user_id, "account disabled")
    if before["role"] != after["role"] or "password_hash" in values:
        revoke_user_sessions(session, user_id, "role or password changed")
    return user


def get_user(session: Session, user_id: int, scope: Scope) -> AppUser:
    user = session.scalar(
        select(AppUser)
        .where(AppUser.id == user_id)
        .where(bound(user_clause(scope, "app_user"), scope.params))
    )
    if user is None:
        raise NotFound(f"No user {user_id}.")
    return user


def list_users(
    session: Session,
    scope: Scope,
    *,
    role: str | None = None,
    town: str | None = None,
    community: str | None = None,
    q: str | None = None,
    active: bool | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[AppUser], int]:
    where = [user_clause(scope, "app_user")]
    params: dict[str, Any] = dict(scope.params)
    if role:
        where.append("app_user.role = :role")
        params["role"] = role
    if town:
        where.append(
            "(app_user.town_code = :town OR app_user.id IN (SELECT w.user_id FROM "
            "cell_worker w JOIN grid_cell c ON c.code = w.cell_code "
            "WHERE c.town_code = :town))"
        )
        params["town"] = town
    if community:
        where.append(
            "(app_user.community_code = :community OR app_user.id IN (SELECT "
            "w.user_id FROM cell_worker w JOIN grid_cell c ON c.code = w.cell_code "
            "WHERE c.community_code = :community))"
        )
        params["community"] = community
    if q:
        where.append("(app_user.username ILIKE :q OR app_user.display_name ILIKE :q)")
        params["q"] = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if active is not None:
        where.append("app_user.is_active = :active")
        params["active"] = active
    clause = bound(" AND ".join(where), params)
    total = session.scalar(select(text("count(*)")).select_from(AppUser).where(clause))
    users = session.scalars(
        select(AppUser).where(clause).order_by(AppUser.id).offset(offset).limit(limit)
    ).all()
    return list(users), int(total or 0)


def _territory(
    session: Session,
    role: str,
    town_code: str | None,
    community_code: str | None,
    department_code: str | None,
) -> dict[str, Any]:
    """The territory columns a role needs, checked; a community implies its town."""
    if role not in ROLES:
        raise InvalidInput(
            f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.",
            errors=[{"in": "json", "field": "role", "messages": ["unknown"]}],
        )

    def bad(field: str, message: str) -> InvalidInput:
        return InvalidInput(message, errors=[{"in": "json", "field": field, "messages": [message]}])

    out: dict[str, Any] = {
        "role": role,
        "town_code": None,
        "community_code": None,
        "department_code": None,
    }
    if role == "town_dispatcher":
        if not town_code:
            raise bad("town_code", "A town dispatcher needs a town_code.")
        out["town_code"] = town_code
    elif role == "grid_worker" and not community_code:
        # optional home territory: a dispatcher there may put the worker on its cells
        # before the worker has any (roster writes are checked against the caller's scope)
        out["town_code"] = town_code
    elif role in ("community_dispatcher", "grid_worker"):
        if not community_code:
            raise bad("community_code", "A community dispatcher needs a community_code.")
        town = session.scalar(
            text("SELECT town_code FROM community WHERE code = :c"), {"c": community_code}
        )
        if town is None:
            raise bad("community_code", f"No community {community_code!r}.")
        out.update(community_code=community_code, town_code=town)
    elif role == "department_officer":
        if not department_code:
            raise bad("department_code", "A department officer needs a department_code.")
        out.update(department_code=department_code, town_code=town_code)
    if (
        out["town_code"]
        and session.scalar(text("SELECT 1 FROM town WHERE code = :t"), {"t": out["town_code"]})
        is None
    ):
        raise bad("town_code", f"No town {out['town_code']!r}.")
    return out
