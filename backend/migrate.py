"""Run Alembic migrations from code (used by the CLI and the test suite)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

import migrations


def alembic_config(migration_url: str, app_url: str | None = None) -> Config:
    """Migrations run as the owner (migration_url); when the app serves as another role
    (app_url's user), the migrations grant that role what it needs and no more."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", migration_url.replace("%", "%%"))
    app_role = runtime_role(migration_url, app_url)
    if app_role:
        cfg.set_main_option("gridpatrol.app_role", app_role)
    return cfg


def runtime_role(migration_url: str, app_url: str | None) -> str | None:
    if not app_url:
        return None
    owner, app = make_url(migration_url).username, make_url(app_url).username
    return app if app and app != owner else None


def upgrade(migration_url: str, revision: str = "head", app_url: str | None = None) -> None:
    command.upgrade(alembic_config(migration_url, app_url), revision)
