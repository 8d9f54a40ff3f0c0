"""Engine and session handling. Services receive a Session; the web layer owns its lifetime."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine that fails fast when the server is unreachable (health checks rely on it)."""
    connect_args = {"connect_timeout": 3, "application_name": "gridpatrol"}
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args=connect_args,
        **kwargs,  # type: ignore[arg-type]
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
