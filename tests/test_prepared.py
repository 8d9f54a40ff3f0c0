"""Server-side prepared statements (backend/services/prepared.py): prepared once per connection,
kept across a rolled-back transaction, and plain text when the engine says not to (behind
PgBouncer in transaction mode)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.db import make_engine
from backend.services.prepared import _forms, execute_prepared

SQL = "SELECT CAST(:a AS int) + CAST(:b AS int) AS s, CAST(:a AS int) * 2 AS twice"
PREPARED = text("SELECT count(*) FROM pg_prepared_statements WHERE name = :n")


def test_binds_become_positions_and_casts_stay():
    name, prepare, execute, names = _forms(SQL + " WHERE 'x::y' <> :c::text")
    assert names == ("a", "b", "c")
    assert prepare == (
        f"PREPARE {name} AS SELECT CAST($1 AS int) + CAST($2 AS int) AS s, "
        "CAST($1 AS int) * 2 AS twice WHERE 'x::y' <> $3::text"
    )
    assert execute == f"EXECUTE {name}(%(a)s, %(b)s, %(c)s)"


def test_prepared_once_per_connection_and_kept_after_a_rollback(app):
    engine = make_engine(app.extensions["gridpatrol.engine"].url, pool_size=1, max_overflow=0)
    name = _forms(SQL)[0]
    try:
        with Session(engine) as session:
            row = execute_prepared(session, SQL, {"a": 2, "b": 3, "unused": "x"}).one()
            assert (row.s, row.twice) == (5, 4)
            session.rollback()  # PREPARE is not undone by a rollback
            assert execute_prepared(session, SQL, {"a": 10, "b": 1}).one().s == 11
            assert session.scalar(PREPARED, {"n": name}) == 1
        with Session(engine) as session:  # the same pooled connection: nothing prepared again
            assert execute_prepared(session, SQL, {"a": 1, "b": 1}).one().s == 2
            assert session.scalar(PREPARED, {"n": name}) == 1
    finally:
        engine.dispose()


def test_plain_text_when_the_engine_says_so(app):
    engine = make_engine(app.extensions["gridpatrol.engine"].url, prepared=False)
    try:
        with Session(engine) as session:
            assert execute_prepared(session, SQL, {"a": 2, "b": 3}).one().s == 5
            assert session.scalar(PREPARED, {"n": _forms(SQL)[0]}) == 0
    finally:
        engine.dispose()
