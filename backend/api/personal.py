"""Personal data in responses: the one place that says which roles see it unmasked.

Phone numbers, ID numbers and (later) legal representatives' names are masked for every role
not listed here; a user always sees their own.
"""

from __future__ import annotations

from typing import Any

from flask import g
from marshmallow import fields

REVEAL_TO: dict[str, frozenset[str]] = {
    "phone": frozenset({"admin", "city_dispatcher", "town_dispatcher", "community_dispatcher"}),
    "id_number": frozenset({"admin"}),
    "person_name": frozenset(
        {
            "admin",
            "city_dispatcher",
            "town_dispatcher",
            "community_dispatcher",
            "grid_worker",
            "department_officer",
        }
    ),
}


def mask(kind: str, value: str) -> str:
    if kind == "phone":  # 13812345678 → 138****5678
        return value[:3] + "****" + value[-4:] if len(value) >= 8 else "****"
    if kind == "id_number":  # 18 digits → first 6, last 4
        return value[:6] + "*" * max(len(value) - 10, 4) + value[-4:] if len(value) > 10 else "****"
    if kind == "person_name":  # 张三丰 → 张**
        return value[:1] + "*" * (len(value) - 1) if value else value
    return "****"


class Personal(fields.String):
    """A string shown in full only to the roles in REVEAL_TO[kind] (or its own subject)."""

    def __init__(self, kind: str, *, owner_attr: str | None = None, **kwargs: Any) -> None:
        if kind not in REVEAL_TO:
            raise ValueError(f"unknown kind of personal data {kind!r}")
        self.kind, self.owner_attr = kind, owner_attr
        kwargs.setdefault("metadata", {}).setdefault(
            "description", f"personal data ({kind}); masked unless your role needs it"
        )
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        principal = g.get("principal")
        own = (
            principal is not None
            and self.owner_attr is not None
            and _get(obj, self.owner_attr) == principal.user_id
        )
        if own or (principal is not None and principal.role in REVEAL_TO[self.kind]):
            return str(value)
        return mask(self.kind, str(value))


def _get(obj: Any, attr: str) -> Any:
    return obj.get(attr) if isinstance(obj, dict) else getattr(obj, attr, None)
