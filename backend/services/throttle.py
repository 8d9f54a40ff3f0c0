"""Login throttling, per account and per client address, kept in PostgreSQL so that every
web worker on every host sees the same counts.

After a few failures each further attempt must wait longer (1 s, 2 s, 4 s, ...); after more,
the key is locked for a while. A success clears the account's count (not the address's: one
valid account must not reset an attacker's count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.services.errors import TooManyRequests


@dataclass(frozen=True)
class Policy:
    free_failures: int  # failures before slowing down
    lock_after: int  # failures (within the window) that lock the key
    window: timedelta  # failures older than this are forgotten
    lock_for: timedelta


ACCOUNT = Policy(
    free_failures=3, lock_after=10, window=timedelta(minutes=15), lock_for=timedelta(minutes=15)
)
ADDRESS = Policy(
    free_failures=10, lock_after=50, window=timedelta(minutes=15), lock_for=timedelta(minutes=15)
)


def keys(username: str, client_addr: str | None) -> list[tuple[str, Policy]]:
    out = [(f"user:{username.lower()}", ACCOUNT)]
    if client_addr:
        out.append((f"addr:{client_addr}", ADDRESS))
    return out


def check(session: Session, username: str, client_addr: str | None) -> None:
    """Raise TooManyRequests while any of the request's keys is locked or cooling down."""
    now = session.scalar(text("SELECT now()"))
    wait = 0.0
    for key, policy in keys(username, client_addr):
        row = session.execute(
            text(
                "SELECT failures, last_failure_at, locked_until, first_failure_at "
                "FROM login_throttle WHERE key = :k"
            ),
            {"k": key},
        ).first()
        if row is None:
            continue
        if row.locked_until and row.locked_until > now:
            wait = max(wait, (row.locked_until - now).total_seconds())
        elif row.first_failure_at >= now - policy.window and row.failures >= policy.free_failures:
            ready = row.last_failure_at + _backoff(row.failures, policy)
            wait = max(wait, (ready - now).total_seconds())
    if wait > 0:
        raise TooManyRequests(
            "Too many failed logins; wait before trying again.", retry_after=math.ceil(wait)
        )


def record_failure(session: Session, username: str, client_addr: str | None) -> None:
    # Forget keys idle for a day (guessed usernames would otherwise pile up).
    session.execute(
        text(
            "DELETE FROM login_throttle WHERE last_failure_at < now() - interval '1 day' "
            "AND (locked_until IS NULL OR locked_until < now())"
        )
    )
    for key, policy in keys(username, client_addr):
        session.execute(
            text(
                "INSERT INTO login_throttle AS t (key, failures, first_failure_at, "
                "  last_failure_at) VALUES (:k, 1, now(), now()) "
                "ON CONFLICT (key) DO UPDATE SET "
                "  failures = CASE WHEN t.first_failure_at < now() - :window "
                "                  AND (t.locked_until IS NULL OR t.locked_until < now()) "
                "             THEN 1 ELSE t.failures + 1 END, "
                "  first_failure_at = CASE WHEN t.first_failure_at < now() - :window "
                "                  AND (t.locked_until IS NULL OR t.locked_until < now()) "
                "             THEN now() ELSE t.first_failure_at END, "
                "  last_failure_at = now()"
            ),
            {"k": key, "window": policy.window},
        )
        session.execute(
            text(
                "UPDATE login_throttle SET locked_until = now() + :lock "
                "WHERE key = :k AND failures >= :n AND "
                "(locked_until IS NULL OR locked_until < now())"
            ),
            {"k": key, "lock": policy.lock_for, "n": policy.lock_after},
        )


def record_success(session: Session, username: str) -> None:
    session.execute(
        text("DELETE FROM login_throttle WHERE key = :k"), {"k": f"user:{username.lower()}"}
    )


def _backoff(failures: int, policy: Policy) -> timedelta:
    return timedelta(seconds=min(2 ** (failures - policy.free_failures), 300))
