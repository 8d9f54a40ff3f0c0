"""Migration 0017 reconciles the seed tables to backend/data/*.csv: a database migrated up to
0016 on the earlier seed files (tests/fixtures/seed_0016/data, as committed before issue 13)
ends, after 0017, in the same seed state as this run's fresh database — and again after 0017
is undone and redone. Rows are compared by their natural keys and values, not by ids, versions
or timestamps."""

from __future__ import annotations

import importlib.resources
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from backend.migrate import alembic_config, upgrade
from tests.conftest import drop_database

OLD_SEED = Path(__file__).parent / "fixtures" / "seed_0016"

SEED_QUERIES = {
    "department": "SELECT code, name, town_branches, webhook_url, active, legal_basis "
    "FROM department ORDER BY code",
    "routing_rule": "SELECT finding_type, permit_type, industry_prefix, department_code, "
    "time_limit_days, priority, active, note, legal_basis FROM routing_rule "
    "ORDER BY finding_type, permit_type NULLS FIRST, industry_prefix NULLS FIRST, active",
    "permit_requirement": "SELECT industry_prefix, permit_type, note, legal_basis "
    "FROM permit_requirement ORDER BY industry_prefix, permit_type",
    "permit_type": "SELECT code, name, aliases, department_code, legal_basis, active "
    "FROM permit_type ORDER BY code",
    "finding_fk_valid": "SELECT convalidated FROM pg_constraint "
    "WHERE conname = 'fk_finding_permit_type'",
}


def seed_state(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: [tuple(r) for r in conn.execute(text(q))] for name, q in SEED_QUERIES.items()
            }
    finally:
        engine.dispose()


def test_an_old_database_ends_like_a_fresh_one(owner_url, monkeypatch):
    fresh = seed_state(owner_url)
    drug = next(d for d in fresh["department"] if d[0] == "DRUG")
    assert drug[:5] == ("DRUG", "东莞市药品监督管理局", False, None, False)  # kept, inactive

    base = make_url(owner_url)
    name = f"{base.database}_seed_{uuid.uuid4().hex[:6]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        template = (
            "gridpatrol_template"
            if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = 'gridpatrol_template'"))
            else "template0"
        )
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE {template}'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        real_files = importlib.resources.files
        with monkeypatch.context() as patched:
            # 0009 and 0011 read the seed files of their day
            patched.setattr(
                importlib.resources,
                "files",
                lambda package: OLD_SEED if package == "backend" else real_files(package),
            )
            upgrade(url, "0016")
        engine = create_engine(url)
        with engine.connect() as conn:
            old = {r[0]: r[1] for r in conn.execute(text("SELECT code, active FROM department"))}
            names = set(conn.scalars(text("SELECT DISTINCT permit_type FROM routing_rule")))
        engine.dispose()
        assert old["DRUG"] is True and "COMMERCE" not in old and "药品经营许可证" in names

        upgrade(url)
        assert seed_state(url) == fresh

        from alembic import command

        command.downgrade(alembic_config(url), "0016")
        upgrade(url)
        assert seed_state(url) == fresh

        # rules admins added before: an unknown permit text, an alias that now says the same
        # as a seeded rule, and a rule at the retired drug administration
        command.downgrade(alembic_config(url), "0016")
        engine = create_engine(url)
        with engine.begin() as conn:
            for permit, prefix, department in (
                ("卫生许可证", None, "HEALTH"),
                ("食品经营许可", None, "SAMR"),
                ("药品经营许可证", "5251", "DRUG"),
            ):
                rule_id = conn.scalar(
                    text(
                        "INSERT INTO routing_rule (finding_type, permit_type, industry_prefix, "
                        "department_code, time_limit_days) VALUES ('permit_missing', :p, :i, "
                        ":d, 7) RETURNING id"
                    ),
                    {"p": permit, "i": prefix, "d": department},
                )
                conn.execute(
                    text(
                        "INSERT INTO audit_event (actor_username, actor_role, action, "
                        "object_type, object_id, changes) VALUES ('test', 'admin', 'create', "
                        "'routing_rule', :id, '{}')"
                    ),
                    {"id": str(rule_id)},
                )
            conn.execute(
                text(
                    "INSERT INTO permit_requirement (industry_prefix, permit_type) "
                    "VALUES ('5999', '卫生许可证')"
                )
            )
        upgrade(url)
        with engine.connect() as conn:
            added = conn.execute(
                text(
                    "SELECT permit_type, industry_prefix, department_code, active "
                    "FROM routing_rule WHERE time_limit_days = 7 ORDER BY id"
                )
            ).all()
            legacy = conn.execute(
                text("SELECT code, name, department_code FROM permit_type WHERE code ~ 'LEGACY'")
            ).all()
            required = conn.scalar(
                text("SELECT permit_type FROM permit_requirement WHERE industry_prefix = '5999'")
            )
        engine.dispose()
        assert legacy == [("LEGACY_1", "卫生许可证", "HEALTH")]
        assert [tuple(r) for r in added] == [
            ("LEGACY_1", None, "HEALTH", True),
            ("FOOD_BUSINESS", None, "SAMR", False),  # the seeded food rule keeps the key
            ("DRUG_BUSINESS", "5251", "SAMR", True),  # off the retired department
        ]
        assert required == "LEGACY_1"
    finally:
        drop_database(admin, name)
        admin.dispose()
