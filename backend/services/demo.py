"""Load the deterministic synthetic demo city (geo.demo_city) and its demo accounts."""

from __future__ import annotations

from dataclasses import dataclass

import shapely
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from backend.models import AppUser
from backend.services.auth import create_user
from geo.demo_city import CITY_CODE, CITY_NAME, Area, build_demo_city

DEMO_ACCOUNTS = (("admin", "admin", "演示管理员"),)


@dataclass(frozen=True)
class DemoResult:
    loaded: bool
    towns: int
    communities: int
    cells: int
    accounts: list[tuple[str, str]]  # (username, role)


def load_demo(session: Session, password: str, seed: int = 20171109) -> DemoResult:
    """Load the demo city once; a second call only reports what is there."""
    existing = session.scalar(text("SELECT count(*) FROM grid_cell"))
    if existing:
        counts = _counts(session)
        return DemoResult(False, *counts, _ensure_accounts(session, password))
    city = build_demo_city(seed=seed)
    _insert(session, "city", [Area(CITY_CODE, CITY_NAME, None, city.outline)], None)
    _insert(session, "town", city.towns, None)
    _insert(session, "community", city.communities, "town_code")
    _insert(session, "grid_cell", city.cells, "community_code")
    session.execute(
        text(
            "UPDATE grid_cell c SET town_code = m.town_code FROM community m "
            "WHERE m.code = c.community_code"
        )
    )
    for level, table, parent in (
        ("city", "city", "NULL"),
        ("town", "town", f"'{CITY_CODE}'"),
        ("community", "community", "town_code"),
        ("cell", "grid_cell", "community_code"),
    ):
        session.execute(
            text(
                f"INSERT INTO grid_boundary_version "
                f"(level, code, name, parent_code, geom, version, valid_from) "
                f"SELECT '{level}', code, name, {parent}, geom, version, valid_from FROM {table}"
            )
        )
    accounts = _ensure_accounts(session, password)
    return DemoResult(True, len(city.towns), len(city.communities), len(city.cells), accounts)


def _insert(session: Session, table: str, areas: list[Area], parent_column: str | None) -> None:
    cols = "code, name, geom" + (f", {parent_column}" if parent_column else "")
    vals = ":code, :name, ST_SetSRID(ST_GeomFromWKB(:wkb), 4490)" + (
        ", :parent" if parent_column else ""
    )
    if table == "grid_cell":  # town_code is filled from the community right after
        cols += ", town_code"
        vals += ", substr(:parent, 1, 9)"
    session.execute(
        text(f"INSERT INTO {table} ({cols}) VALUES ({vals})"),
        [
            {"code": a.code, "name": a.name, "wkb": shapely.to_wkb(a.geom), "parent": a.parent_code}
            for a in areas
        ],
    )


def _counts(session: Session) -> tuple[int, int, int]:
    row = session.execute(
        text(
            "SELECT (SELECT count(*) FROM town), (SELECT count(*) FROM community), "
            "(SELECT count(*) FROM grid_cell)"
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def _ensure_accounts(session: Session, password: str) -> list[tuple[str, str]]:
    out = []
    for username, role, display in DEMO_ACCOUNTS:
        if session.scalar(select(AppUser.id).where(AppUser.username == username)) is None:
            create_user(session, username, password, role, display_name=display)
        out.append((username, role))
    return out
