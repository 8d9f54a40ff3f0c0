"""Test fixtures: one fresh PostGIS database per run, migrated once; each test in a transaction
that is rolled back. A missing database fails the run; nothing is skipped."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.app import create_app
from backend.config import Settings
from backend.migrate import upgrade
from backend.services.users import create_user

TEST_PASSWORD = "test-password-1"

# Property tests are derandomised by default, so a red run is reproducible and CI is not a
# lottery; HYPOTHESIS_PROFILE=explore searches afresh on every run.
# photos the tests upload go to a scratch directory, not the working tree
os.environ.setdefault(
    "GRIDPATROL_STORAGE_ROOT", tempfile.mkdtemp(prefix="gridpatrol-test-attachments-")
)
settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def _base_urls() -> tuple[str, str]:
    """(app URL, owner URL): the app serves as a least-privileged role when the set-up made
    one (GRIDPATROL_MIGRATION_URL names the owner); otherwise both are DATABASE_URL."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.fail(
            "DATABASE_URL is not set. Run the suite with `make test`, which starts PostgreSQL "
            "with PostGIS and sets it; or export DATABASE_URL for your own PostGIS.",
            pytrace=False,
        )
    return url, os.environ.get("GRIDPATROL_MIGRATION_URL") or url


@pytest.fixture(scope="session")
def test_database() -> Iterator[tuple[str, str]]:
    """A fresh database for this run, created and migrated by the owner role."""
    app_base, owner_base = (make_url(u) for u in _base_urls())
    name = f"{owner_base.database}_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(owner_base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            has_template = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = 'gridpatrol_template'")
            )
            template = "gridpatrol_template" if has_template else "template0"
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE {template}'))
    except Exception as exc:  # the run must fail loudly, never skip
        pytest.fail(
            f"Cannot create the test database on {owner_base.render_as_string()}: {exc}",
            pytrace=False,
        )
    owner_url = owner_base.set(database=name).render_as_string(hide_password=False)
    app_url = app_base.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(owner_url, app_url=app_url)
        yield app_url, owner_url
    finally:
        _end_app_connections(app_url, name)
        drop_database(admin, name)
        admin.dispose()


def drop_database(admin: Engine, name: str) -> None:
    """Plain DROP (it stops an autovacuum worker itself, which WITH (FORCE) may not signal
    as a non-superuser), retried while a just-terminated backend is still exiting."""
    for attempt in range(50):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except Exception:
            if attempt == 49:
                raise
            time.sleep(0.1)


def _end_app_connections(app_url: str, name: str) -> None:
    """The owner may not terminate the app role's backends (FORCE needs that); the app role
    may end its own, e.g. a connection an interrupted test left open. Waits until they are
    gone, since a terminated backend takes a moment to exit."""
    engine = create_engine(app_url, isolation_level="AUTOCOMMIT")
    others = (
        "FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid() "
        "AND usename = current_user"
    )
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) {others}"), {"db": name})
            for _ in range(50):
                if not conn.scalar(text(f"SELECT count(*) {others}"), {"db": name}):
                    break
                time.sleep(0.1)
    except Exception as exc:  # best effort: the drop below reports what is really wrong
        print("could not end the app role's connections:", exc)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def database_url(test_database: tuple[str, str]) -> str:
    """The URL the app serves with (the least-privileged role)."""
    return test_database[0]


@pytest.fixture(scope="session")
def owner_url(test_database: tuple[str, str]) -> str:
    return test_database[1]


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Any]:
    settings = Settings.from_env(
        database_url=database_url, secret_key="test-secret-" + "x" * 40, environment="test"
    )
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["gridpatrol.engine"].dispose()  # so the database can be dropped
    flask_app.extensions["gridpatrol.read_engine"].dispose()


@pytest.fixture(scope="session")
def engine(app: Any) -> Engine:
    return app.extensions["gridpatrol.engine"]


@pytest.fixture()
def connection(app: Any, engine: Engine) -> Iterator[Connection]:
    """A connection in an open transaction; everything the test does is rolled back."""
    conn = engine.connect()
    outer = conn.begin()
    original = app.extensions["gridpatrol.sessionmaker"]
    original_read = app.extensions["gridpatrol.read_sessionmaker"]
    # read-only views (autocommit in the app) share the test's transaction too, or they would
    # not see its data; tests/api/test_read_only.py checks the autocommit itself
    app.extensions["gridpatrol.sessionmaker"] = app.extensions["gridpatrol.read_sessionmaker"] = (
        sessionmaker(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    )
    try:
        yield conn
        # Fire the deferred audit checks as a commit would: a test whose writes lack their
        # audit events fails here, even though nothing is ever committed.
        conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    finally:
        app.extensions["gridpatrol.sessionmaker"] = original
        app.extensions["gridpatrol.read_sessionmaker"] = original_read
        outer.rollback()
        conn.close()


@pytest.fixture()
def session(app: Any, connection: Connection) -> Iterator[Session]:
    """A session sharing the test's transaction (what the app would see)."""
    s = app.extensions["gridpatrol.sessionmaker"]()
    yield s
    s.close()


@pytest.fixture()
def client(app: Any, connection: Connection) -> Any:
    return app.test_client()


def make_token(client: Any, session: Session, role: str = "admin", **scope: Any) -> str:
    username = f"{role}-{uuid.uuid4().hex[:6]}"
    create_user(session, username, TEST_PASSWORD, role, **scope)
    session.commit()
    resp = client.post("/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["access_token"]


@pytest.fixture()
def admin_headers(client: Any, session: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(client, session, 'admin')}"}


@pytest.fixture()
def worker_headers(client: Any, session: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(client, session, 'grid_worker')}"}
