"""A request's territory as SQL: the one place where scope becomes a WHERE clause.

Every query of scoped data goes through these helpers, so an object outside the caller's
territory is simply not found (404), never loaded and then refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text

from backend.services.auth import Principal

CITY_ROLES = frozenset({"admin", "city_dispatcher", "auditor"})


@dataclass(frozen=True)
class Scope:
    kind: str  # city | town | community | cells
    user_id: int | None = None
    town_code: str | None = None
    community_code: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return {
            "scope_user": self.user_id,
            "scope_town": self.town_code,
            "scope_community": self.community_code,
        }


CITY = Scope("city")


def scope_of(principal: Principal) -> Scope:
    role = principal.role
    if role in CITY_ROLES:
        return CITY
    if role == "town_dispatcher":
        return Scope("town", principal.user_id, town_code=principal.town_code)
    if role == "community_dispatcher":
        return Scope("community", principal.user_id, community_code=principal.community_code)
    if role == "grid_worker":
        return Scope("cells", principal.user_id)
    if role == "department_officer":  # a town branch sees its town; a city department all
        if principal.town_code:
            return Scope("town", principal.user_id, town_code=principal.town_code)
        return CITY
    raise ValueError(f"no scope rule for role {role!r}")


_MY_CELLS = "SELECT cell_code FROM cell_worker WHERE user_id = :scope_user"
_MY_CELL_ROWS = (
    "SELECT g.code, g.community_code, g.town_code FROM grid_cell g "
    "JOIN cell_worker w ON w.cell_code = g.code WHERE w.user_id = :scope_user"
)
_COMMUNITY_TOWN = "(SELECT town_code FROM community WHERE code = :scope_community)"


def area_clause(scope: Scope, level: str, alias: str = "t") -> str:
    """WHERE fragment limiting rows of `level` (town | community | cell) to the scope."""
    a = alias
    if scope.kind == "city" or level == "city":
        return "true"
    rules = {
        ("town", "town"): f"{a}.code = :scope_town",
        ("town", "community"): f"{a}.town_code = :scope_town",
        ("town", "cell"): f"{a}.town_code = :scope_town",
        ("community", "town"): f"{a}.code = {_COMMUNITY_TOWN}",
        ("community", "community"): f"{a}.code = :scope_community",
        ("community", "cell"): f"{a}.community_code = :scope_community",
        ("cells", "town"): f"{a}.code IN (SELECT town_code FROM ({_MY_CELL_ROWS}) m)",
        ("cells", "community"): f"{a}.code IN (SELECT community_code FROM ({_MY_CELL_ROWS}) m)",
        ("cells", "cell"): f"{a}.code IN ({_MY_CELLS})",
    }
    return rules[(scope.kind, level)]


def cell_code_clause(scope: Scope, column: str) -> str:
    """WHERE fragment for rows that carry a cell code in `column` (tasks, entities later)."""
    if scope.kind == "city":
        return "true"
    return f"{column} IN (SELECT c.code FROM grid_cell c WHERE {area_clause(scope, 'cell', 'c')})"


def user_clause(scope: Scope, alias: str = "u") -> str:
    """Users a dispatcher may see: those working in its territory (and itself)."""
    a = alias
    if scope.kind == "city":
        return "true"
    if scope.kind == "cells":
        return f"{a}.id = :scope_user"
    in_territory = (
        f"EXISTS (SELECT 1 FROM cell_worker w JOIN grid_cell c ON c.code = w.cell_code "
        f"WHERE w.user_id = {a}.id AND {area_clause(scope, 'cell', 'c')})"
    )
    if scope.kind == "town":
        same = f"({a}.town_code = :scope_town OR {a}.community_code IN "
        same += "(SELECT code FROM community WHERE town_code = :scope_town))"
    else:
        same = f"{a}.community_code = :scope_community"
    return f"({a}.id = :scope_user OR {same} OR {in_territory})"


def bound(sql: str, params: dict[str, Any]) -> TextClause:
    """text(sql) with only the parameters it names bound (scope params come as a set)."""
    names = set(re.findall(r"(?<!:):([A-Za-z_]\w*)", sql))
    return text(sql).bindparams(**{k: v for k, v in params.items() if k in names})
