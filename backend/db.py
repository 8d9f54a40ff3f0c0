"""Engine and session handling. Services receive a Session; the web layer owns its lifetime."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

# A pooled connection idle longer than this is tested (SELECT 1) before use. `pool_pre_ping`
# tests on every checkout: two more round trips (the ping and its rollback) on every request,
# measured as a fifth of PostgreSQL's CPU per phone request (benchmarks/README.md, "phone").
# A connection used moments ago is alive unless the server went away in between; then that
# request answers 503 (backend/errors.py) and SQLAlchemy discards the whole pool.
PING_AFTER_IDLE_S = 10.0


def make_engine(
    url: str,
    *,
    ping_after_idle_s: float = PING_AFTER_IDLE_S,
    prepared: bool = True,
    **kwargs: Any,
) -> Engine:
    """An engine that fails fast when the server is unreachable (health checks rely on it).
    `prepared`: whether `services.prepared.execute_prepared` may PREPARE statements on its
    connections (an execution option every connection inherits)."""
    connect_args = {"connect_timeout": 3, "application_name": "gridpatrol"}
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    _ping_when_idle(engine, ping_after_idle_s)
    return engine.execution_options(gridpatrol_prepared=prepared)


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    dbapi_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["gridpatrol_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("gridpatrol_idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return  # just connected, or used moments ago
        try:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_conn.rollback()
        except dbapi_error as error:
            # the pool retries the checkout with a new connection
            raise exc.DisconnectionError(f"pooled connection is dead: {error}") from error


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
