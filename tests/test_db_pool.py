"""The pool tests a connection only after it sat idle (backend/db.py): a dead idle connection
is replaced before use, a recently used one is trusted, and a failure on it discards the pool
so that the next request works."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from backend.db import make_engine

PID = text("SELECT pg_backend_pid()")


def _kill(engine, pid: int) -> None:
    """Terminate a backend from a connection outside `engine`'s pool."""
    killer = create_engine(engine.url, poolclass=NullPool)
    try:
        with killer.connect() as other:
            # with a timeout: returns once the backend is gone
            assert other.scalar(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
    finally:
        killer.dispose()


def test_idle_dead_connection_is_replaced_before_use(app):
    url = app.extensions["gridpatrol.engine"].url
    engine = make_engine(url, ping_after_idle_s=0.0, pool_size=1, max_overflow=1)
    try:
        with engine.connect() as conn:
            pid = conn.scalar(PID)
        _kill(engine, pid)
        with engine.connect() as conn:  # the ping fails, the pool connects anew
            assert conn.scalar(PID) != pid
    finally:
        engine.dispose()


def test_recently_used_connection_is_not_pinged(app):
    url = app.extensions["gridpatrol.engine"].url
    engine = make_engine(url, ping_after_idle_s=3600.0, pool_size=1, max_overflow=1)
    statements: list[str] = []
    try:
        with engine.connect() as conn:
            pid = conn.scalar(PID)

        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        with engine.connect() as conn:
            assert conn.scalar(PID) == pid
        assert statements == ["SELECT pg_backend_pid()"]
        _kill(engine, pid)
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.scalar(PID)  # the app answers 503 for this one (backend/errors.py)
        with engine.connect() as conn:  # the pool was discarded: a new connection
            assert conn.scalar(PID) != pid
    finally:
        engine.dispose()
