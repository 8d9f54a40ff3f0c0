"""Departments as data (issue 13): admins add them, change them and deactivate them; every
change is audited (the database refuses a department write without its audit event).

A department is never deleted: referrals, rules and outbox events point at it. `active =
false` takes it out of routing and out of the lists offered to users; a department that active
routing rules still point at cannot be deactivated (409 listing them): repoint or deactivate
those rules first, so that no finding type silently falls through to the default rule.

Webhook URLs are checked against backend/services/webhook_policy.py when they are set (a 422
when refused) and again at every delivery; only admins see them (others see `has_webhook`),
and nobody ever sees a webhook secret.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.services import audit, webhook_policy
from backend.services.errors import Conflict, InvalidInput, NotFound, PreconditionFailed

CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
NAME_MAX = 100
SECRET_MIN, SECRET_MAX = 16, 200
FIELDS = ("name", "town_branches", "webhook_url", "webhook_secret", "active")

_SELECT = (
    "SELECT code, name, town_branches, webhook_url, webhook_url IS NOT NULL AS has_webhook, "
    "webhook_secret IS NOT NULL AS has_secret, active, version, created_at, updated_at "
    "FROM department"
)


def _shown(row: Any, with_webhook_url: bool) -> dict[str, Any]:
    out = dict(row)
    out.pop("has_secret", None)
    if not with_webhook_url:
        out.pop("webhook_url", None)
    return out


def list_departments(
    session: Session, *, include_inactive: bool = False, with_webhook_url: bool = False
) -> list[dict[str, Any]]:
    """Departments by code (active ones unless `include_inactive`); `webhook_url` only with
    `with_webhook_url` (admins), `has_webhook` always; never a secret."""
    where = "" if include_inactive else " WHERE active"
    rows = session.execute(text(f"{_SELECT}{where} ORDER BY code")).mappings()
    return [_shown(r, with_webhook_url) for r in rows]


def get_department(
    session: Session, code: str, *, with_webhook_url: bool = False
) -> dict[str, Any]:
    row = session.execute(text(f"{_SELECT} WHERE code = :c"), {"c": code}).mappings().first()
    if row is None:
        raise NotFound(f"No department {code}.")
    return _shown(row, with_webhook_url)


def require_active(session: Session, code: str) -> None:
    """422 unless `code` is an active department (for rules and re-routing to point at).
    The row stays share-locked to the end of the caller's transaction, so a deactivation
    (which locks it for update before counting active rules) cannot slip in between."""
    active = session.scalar(
        text("SELECT active FROM department WHERE code = :c FOR SHARE"), {"c": code}
    )
    if active is None:
        raise InvalidInput(f"No department {code}.", errors=_field("department_code", "unknown"))
    if not active:
        raise InvalidInput(
            f"Department {code} is inactive; reactivate it or choose another.",
            errors=_field("department_code", "inactive"),
        )


def active_rules(session: Session, code: str) -> list[int]:
    return list(
        session.scalars(
            text("SELECT id FROM routing_rule WHERE department_code = :c AND active ORDER BY id"),
            {"c": code},
        )
    )


# --------------------------------------------------------------------------- writing


def create_department(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    """Add a department (audited); 409 when its code or name is taken. In the caller's
    transaction; the new row as an admin sees it."""
    unknown = set(values) - {"code", *FIELDS}
    if unknown:
        raise InvalidInput(f"Unknown department fields: {', '.join(sorted(unknown))}.")
    code = values.get("code")
    if not isinstance(code, str) or not CODE.fullmatch(code):
        raise InvalidInput(
            "A department code is 2 to 32 capital letters, digits or _, starting with a "
            "letter (e.g. SAMR).",
            errors=_field("code", "invalid"),
        )
    if "name" not in values:
        raise InvalidInput("A department needs a name.", errors=_field("name", "required"))
    clean = _validated({"town_branches": False, "active": True, **values})
    clean.pop("code", None)
    if clean.get("webhook_url") and not clean.get("webhook_secret"):
        raise InvalidInput(
            "A webhook URL needs a webhook_secret (16+ characters) to sign its deliveries.",
            errors=_field("webhook_secret", "required with webhook_url"),
        )
    if session.scalar(text("SELECT 1 FROM department WHERE code = :c"), {"c": code}):
        raise Conflict(f"Department {code} already exists.", department=code)
    _check_name_free(session, clean["name"], code)
    columns = ["code", *clean]
    try:
        with session.begin_nested():
            inserted = session.scalar(
                text(
                    f"INSERT INTO department ({', '.join(columns)}) VALUES "
                    f"({', '.join(':' + c for c in columns)}) ON CONFLICT DO NOTHING "
                    "RETURNING code"
                ),
                {"code": code, **clean},
            )
    except IntegrityError:
        inserted = None
    if inserted is None:  # a concurrent insert won
        raise Conflict(f"Department {code} or the name {clean['name']!r} is already taken.")
    audit.record(session, "create", "department", code, changes=_changes({}, clean))
    return get_department(session, code, with_webhook_url=True)


def update_department(
    session: Session, code: str, expected: int, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change a department's name, town branches, webhook URL and secret, or active flag, if
    it is still at version `expected` (412 otherwise); audited. Deactivating one that active
    routing rules point at is a 409 naming them."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown department fields: {', '.join(sorted(unknown))}.")
    clean = _validated(changes)
    # locked first: a rule made to point here meanwhile is counted below (see require_active)
    row = (
        session.execute(text(f"{_SELECT} WHERE code = :c FOR UPDATE"), {"c": code})
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No department {code}.")
    url = clean.get("webhook_url", row["webhook_url"])
    has_secret = bool(clean["webhook_secret"]) if "webhook_secret" in clean else row["has_secret"]
    if url and not has_secret:
        raise InvalidInput(
            "A webhook URL needs a webhook_secret (16+ characters) to sign its deliveries.",
            errors=_field("webhook_secret", "required with webhook_url"),
        )
    if "name" in clean:
        _check_name_free(session, clean["name"], code)
    if clean.get("active") is False and row["active"]:
        rules = active_rules(session, code)
        if rules:
            raise Conflict(
                f"Active routing rules still send findings to {code}: "
                f"{', '.join(map(str, rules))}. Point them at another department or "
                "deactivate them first.",
                active_rules=rules,
            )
    sets = "".join(f"{c} = :{c}, " for c in clean)
    try:
        with session.begin_nested():
            new = session.scalar(
                text(
                    f"UPDATE department SET {sets}version = version + 1, updated_at = now() "
                    "WHERE code = :code AND version = :v RETURNING version"
                ),
                {**clean, "code": code, "v": expected},
            )
    except IntegrityError:  # the name, taken by a concurrent change
        raise Conflict(f"The name {clean.get('name')!r} is already taken.") from None
    if new is None:
        raise PreconditionFailed(
            f"Department {code} has changed since version {expected}; reload it."
        )
    before = {k: row["has_secret"] if k == "webhook_secret" else row[k] for k in clean}
    audit.record(session, "update", "department", code, changes=_changes(before, clean))
    return get_department(session, code, with_webhook_url=True)


def deactivate_department(session: Session, code: str, expected: int) -> dict[str, Any]:
    return update_department(session, code, expected, {"active": False})


# --------------------------------------------------------------------------- helpers


def _validated(values: dict[str, Any]) -> dict[str, Any]:
    """The writable fields, checked (the API's schemas say the same; the CLI comes here)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "name":
            name = value.strip() if isinstance(value, str) else ""
            if not 1 <= len(name) <= NAME_MAX or "\x00" in name:
                raise InvalidInput(
                    f"A department name has 1 to {NAME_MAX} characters.",
                    errors=_field("name", "length"),
                )
            out[key] = name
        elif key in ("town_branches", "active"):
            if not isinstance(value, bool):
                raise InvalidInput(f"{key} is true or false.", errors=_field(key, "boolean"))
            out[key] = value
        elif key == "webhook_url":
            out[key] = check_webhook_url(value) if value else None
        elif key == "webhook_secret":
            if value is not None and (
                not isinstance(value, str) or not SECRET_MIN <= len(value) <= SECRET_MAX
            ):
                raise InvalidInput(
                    f"A webhook secret has {SECRET_MIN} to {SECRET_MAX} characters.",
                    errors=_field("webhook_secret", "length"),
                )
            out[key] = value or None
        elif key != "code":
            raise InvalidInput(f"Unknown department field {key}.")
        else:
            out[key] = value
    return out


def check_webhook_url(url: Any, allow: webhook_policy.AllowList | None = None) -> str:
    """The URL, if the webhook policy accepts it as written (no DNS lookup: the addresses are
    checked at every delivery); a 422 saying why not."""
    policy = allow if allow is not None else webhook_policy.allow_list_from_env()
    try:
        webhook_policy.check_url(url, policy)
    except webhook_policy.Refused as exc:
        raise InvalidInput(
            f"The webhook URL is refused: {exc.reason}",
            errors=_field("webhook_url", exc.reason),
        ) from None
    return str(url)


def _check_name_free(session: Session, name: str, code: str) -> None:
    other = session.scalar(
        text("SELECT code FROM department WHERE lower(name) = lower(:n) AND code <> :c"),
        {"n": name, "c": code},
    )
    if other:
        raise Conflict(f"Department {other} already has the name {name!r}.", department=other)


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """{field: {from, to}}, a secret shown only as set or not."""
    out = {}
    for key, value in after.items():
        old = before.get(key)
        if key == "webhook_secret":
            old, value = ("(set)" if old else None), ("(set)" if value else None)
        out[key] = {"from": old, "to": value}
    return out


def _field(name: str, message: str) -> list[dict[str, Any]]:
    return [{"in": "body", "field": name, "messages": [message]}]
