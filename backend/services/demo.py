"""Load the deterministic synthetic demo city (geo.demo_city) and its demo accounts."""

from __future__ import annotations

from dataclasses import dataclass

import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services import audit
from backend.services.auth import hash_password
from geo.demo_city import CITY_CODE, CITY_NAME, Area, build_demo_city

# (username, role, display name, territory columns); the per-area accounts are generated.
FIXED_ACCOUNTS = (
    ("admin", "admin", "演示管理员", {}),
    ("city", "city_dispatcher", "市指挥中心调度员", {}),
    ("auditor", "auditor", "审计员", {}),
    ("samr", "department_officer", "市场监管局", {"department_code": "SAMR"}),
)


@dataclass(frozen=True)
class DemoResult:
    loaded: bool
    towns: int
    communities: int
    cells: int
    accounts: list[tuple[str, str]]  # (username or pattern, role)


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
        audit.record_from_query(
            session,
            "create",
            level,
            f"SELECT code AS object_id, jsonb_build_object('name', jsonb_build_object("
            f"'from', NULL, 'to', name), 'source', jsonb_build_object('from', NULL, "
            f"'to', 'demo')) AS changes FROM {table}",
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
    """Fixed accounts, a dispatcher per town and community, a worker per cell (primary in
    it). Missing ones are created set-based; all share one argon2 hash of the demo password
    (hashing 3,500 times would take minutes)."""
    password_hash = hash_password(password)
    for username, role, display, extra in FIXED_ACCOUNTS:
        session.execute(
            text(
                "INSERT INTO app_user (username, display_name, password_hash, role, "
                "department_code) VALUES (:u, :d, :h, :r, :dep) ON CONFLICT DO NOTHING"
            ),
            {
                "u": username,
                "d": display,
                "h": password_hash,
                "r": role,
                "dep": extra.get("department_code"),
            },
        )
    generated = (
        "SELECT 't' || code, name || '调度员', 'town_dispatcher', code, NULL FROM town",
        "SELECT 'c' || code, name || '调度员', 'community_dispatcher', town_code, code "
        "FROM community",
        "SELECT 'w' || code, name || '网格员', 'grid_worker', NULL, NULL FROM grid_cell",
    )
    for select_sql in generated:
        session.execute(
            text(
                f"INSERT INTO app_user (username, display_name, role, town_code, "
                f"community_code, password_hash) SELECT s.*, :h FROM ({select_sql}) "
                f"s(username, display_name, role, town_code, community_code) "
                f"ON CONFLICT (username) DO NOTHING"
            ),
            {"h": password_hash},
        )
    audit.record_from_query(
        session,
        "create",
        "user",
        "SELECT u.id AS object_id, jsonb_build_object('username', jsonb_build_object("
        "'from', NULL, 'to', u.username), 'role', jsonb_build_object('from', NULL, "
        "'to', u.role), 'source', jsonb_build_object('from', NULL, 'to', 'demo')) AS changes "
        "FROM app_user u WHERE NOT EXISTS (SELECT 1 FROM audit_event e "
        "WHERE e.object_type = 'user' AND e.object_id = u.id::text)",
    )
    session.execute(
        text(
            "CREATE TEMP TABLE demo_roster ON COMMIT DROP AS "
            "SELECT c.code AS cell_code, u.id AS user_id FROM grid_cell c "
            "JOIN app_user u ON u.username = 'w' || c.code "
            "WHERE NOT EXISTS (SELECT 1 FROM cell_worker w WHERE w.cell_code = c.code) "
            "AND NOT EXISTS (SELECT 1 FROM cell_worker w WHERE w.user_id = u.id)"
        )
    )
    session.execute(
        text(
            "INSERT INTO cell_worker (cell_code, user_id, duty) "
            "SELECT cell_code, user_id, 'primary' FROM demo_roster"
        )
    )
    audit.record_from_query(
        session,
        "set_workers",
        "cell_roster",
        "SELECT cell_code AS object_id, jsonb_build_object('primary', jsonb_build_object("
        "'from', NULL, 'to', user_id)) AS changes FROM demo_roster",
    )
    session.execute(text("DROP TABLE demo_roster"))
    return [(u, r) for u, r, _, _ in FIXED_ACCOUNTS] + [
        ("t<town code>, e.g. t441900003", "town_dispatcher"),
        ("c<community code>, e.g. c441900003001", "community_dispatcher"),
        ("w<cell code>, e.g. w441900003001001", "grid_worker"),
    ]
