"""The one clock of business dates: "today" and "now" in the business time zone.

Deadlines, overdue flags, written notices, campaigns and listings are dated in the business
time zone (`GRIDPATROL_BUSINESS_TZ`, default Asia/Shanghai), whatever the time zone of the
server process or of the database session. Python code asks `today()`; SQL never uses
CURRENT_DATE or `now()::date` but receives the date as a parameter (`:today`), so both sides
agree and a frozen clock (tests) is honoured everywhere. Instants (`created_at`, token expiry)
stay UTC timestamps; only their reading as a calendar day goes through here. See docs/dates.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.config import business_tz_from_env

_lock = threading.Lock()
_zone: ZoneInfo | None = None
_frozen_at: datetime | None = None


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError with a readable message when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(
            f"GRIDPATROL_BUSINESS_TZ={name!r} is not an IANA time zone (e.g. Asia/Shanghai)."
        ) from exc


def configure(name: str) -> ZoneInfo:
    """Use the zone `name` from now on (the app factory passes its setting)."""
    global _zone
    zone_ = load_zone(name)
    with _lock:
        _zone = zone_
    return zone_


def zone() -> ZoneInfo:
    """The business time zone: as configured, else from the environment."""
    global _zone
    if _zone is None:
        with _lock:
            if _zone is None:
                _zone = load_zone(business_tz_from_env())
    return _zone


def now() -> datetime:
    """The current instant as an aware datetime in the business zone (frozen in tests)."""
    at = _frozen_at
    return (at if at is not None else datetime.now(zone())).astimezone(zone())


def today() -> date:
    """Today's date in the business zone: the day deadlines start from and overdue is
    judged against."""
    return now().date()


def start_of(day: date) -> datetime:
    """Midnight at the start of `day` in the business zone (an aware datetime), for turning
    a period of business dates into a range of instants."""
    return datetime.combine(day, time.min, tzinfo=zone())


@contextmanager
def frozen(at: datetime) -> Iterator[datetime]:
    """Stop the clock at the aware instant `at` (for tests; process-wide)."""
    global _frozen_at
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("freeze the clock at an aware datetime (with a time zone)")
    before = _frozen_at
    _frozen_at = at
    try:
        yield at
    finally:
        _frozen_at = before


@contextmanager
def zone_set_to(name: str) -> Iterator[ZoneInfo]:
    """Use the zone `name` inside the block, the previous one after (for tests)."""
    global _zone
    before = _zone
    try:
        yield configure(name)
    finally:
        with _lock:
            _zone = before
