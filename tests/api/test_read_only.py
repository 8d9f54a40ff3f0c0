"""Views marked `read_only` run their statements without a transaction around them (no BEGIN,
no ROLLBACK: two round trips fewer on the phone's busiest call); every other request keeps
one transaction. Checked on the app's own engine, outside the tests' shared transaction."""

from __future__ import annotations

from flask import g
from sqlalchemy import text

from backend.web import close_db_session, db_session, read_only

XID = text("SELECT pg_current_xact_id()::text")


def _two_xids(app, mark_read_only: bool) -> tuple[str, str]:
    with app.test_request_context("/"):
        if mark_read_only:
            read_only(lambda: None)()
        session = db_session()
        try:
            return session.scalar(XID), session.scalar(XID)
        finally:
            close_db_session()


def test_read_only_views_autocommit(app):
    first, second = _two_xids(app, mark_read_only=True)
    assert first != second  # each statement is its own transaction


def test_other_requests_keep_one_transaction(app):
    first, second = _two_xids(app, mark_read_only=False)
    assert first == second


def test_read_only_does_not_switch_an_open_session(app):
    """Marked after the request's session exists (e.g. below `requires`), it changes nothing:
    the statements already run stay in their transaction."""
    with app.test_request_context("/"):
        session = db_session()
        try:
            first = session.scalar(XID)
            read_only(lambda: None)()
            assert g.get("read_only") is None
            assert db_session() is session and session.scalar(XID) == first
        finally:
            close_db_session()
