"""Request-scoped helpers for views: the database session of this request and its actor."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request
from sqlalchemy.orm import Session

from backend.services import audit
from backend.services.errors import InvalidInput
from geo import crs as geocrs

F = TypeVar("F", bound=Callable[..., Any])


def read_only(view: F) -> F:
    """Mark a view that only reads (put it above `requires`): its statements run without a
    transaction around them (autocommit), which saves the BEGIN and ROLLBACK round trips on
    the phone's busiest calls. Each statement then sees its own snapshot; a change written in
    such a view would commit alone and fail the audit check, so nothing here may write."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("db_session") is None:
            g.read_only = True
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def db_session() -> Session:
    """One Session per request, opened lazily and closed at teardown (rolled back if unfinished).

    Its audit actor starts as 'anonymous' with the client address, request id and device
    location; authentication replaces the who."""
    session: Session | None = g.get("db_session")
    if session is None:
        factory = (
            "gridpatrol.read_sessionmaker" if g.get("read_only") else "gridpatrol.sessionmaker"
        )
        session = current_app.extensions[factory]()
        lon, lat = device_location()
        audit.set_actor(
            session,
            audit.Actor(
                None,
                "anonymous",
                "anonymous",
                client_addr(),
                g.get("request_id"),
                lon,
                lat,
            ),
        )
        g.db_session = session
    return session


def close_db_session(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()


def client_addr() -> str | None:
    return request.remote_addr


def device_location() -> tuple[float | None, float | None]:
    """`X-Device-Location: lon,lat[,crs]` from the phone (crs defaults to gcj02, what the
    map SDKs report), converted to CGCS2000."""
    raw = request.headers.get("X-Device-Location")
    if not raw:
        return None, None
    parts = [p.strip() for p in raw.split(",")]
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        lon, lat = float(parts[0]), float(parts[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError
        crs = geocrs.normalize_crs(parts[2] if len(parts) == 3 else "gcj02")
    except ValueError:
        raise InvalidInput(
            "X-Device-Location must be 'lon,lat' or 'lon,lat,crs' (crs: "
            + " | ".join(geocrs.CRS_NAMES)
            + ").",
            errors=[{"in": "header", "field": "X-Device-Location", "messages": ["malformed"]}],
        ) from None
    return geocrs.to_cgcs2000(crs, lon, lat)
