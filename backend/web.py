"""Request-scoped helpers for views: the database session of this request."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session


def db_session() -> Session:
    """One Session per request, opened lazily and closed at teardown (rolled back if unfinished)."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = current_app.extensions["gridpatrol.sessionmaker"]()
        g.db_session = session
    return session


def close_db_session(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
