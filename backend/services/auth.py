"""Passwords (argon2id), login with throttling, sessions with rotating refresh tokens, and
short-lived access tokens (JWT). Framework-free: the secret and client address are passed in.

An access token names its session (`sid`); every request re-reads the session and the user,
so logout, a disabled account or a changed role take effect at once, not at token expiry.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from backend.models import AppUser
from backend.services import audit, throttle
from backend.services.errors import InvalidInput, Unauthorized
from backend.services.prepared import execute_prepared

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("timing-equaliser")
MIN_PASSWORD_LENGTH = 10
JWT_ALGORITHM = "HS256"
JWT_ISSUER = "gridpatrol"
REFRESH_LIFETIME = timedelta(days=14)  # a phone may stay offline for days
SESSION_MAX_LIFETIME = timedelta(days=90)


@dataclass(frozen=True)
class Principal:
    """Who is acting, as read from the database for this request."""

    user_id: int
    username: str
    role: str
    session_id: str | None = None
    town_code: str | None = None
    community_code: str | None = None
    department_code: str | None = None


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    user: AppUser


def hash_password(password: str) -> str:
    check_password_policy(password)
    return _hasher.hash(password)


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters.",
            errors=[{"in": "json", "field": "password", "messages": ["too short"]}],
        )
    if password.isdigit() or password.isalpha():
        raise InvalidInput(
            "Password must mix letters with digits or symbols.",
            errors=[{"in": "json", "field": "password", "messages": ["too simple"]}],
        )


def verify_password(user: AppUser | None, password: str) -> bool:
    try:
        if user is None:
            _hasher.verify(_DUMMY_HASH, password + "x")  # same cost whether the user exists
            return False
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def login(
    session: Session,
    username: str,
    password: str,
    *,
    secret: str,
    access_minutes: int,
    client_addr: str | None = None,
    user_agent: str | None = None,
) -> TokenPair:
    """Check the throttle, the password and the account; open a session.

    A failure is committed before it is raised, so the throttle counts it.
    """
    throttle.check(session, username, client_addr)
    user = session.scalar(select(AppUser).where(AppUser.username == username))
    if not verify_password(user, password) or user is None or not user.is_active:
        throttle.record_failure(session, username, client_addr)
        audit.record(
            session, "login_failed", "username", username, changes={"client_addr": client_addr}
        )
        session.commit()
        raise Unauthorized("Wrong username or password, or the account is disabled.")
    throttle.record_success(session, username)
    audit.set_actor(session, _actor(session, user))
    session_id = session.scalar(
        text(
            "INSERT INTO auth_session (user_id, expires_at, client_addr, user_agent) "
            "VALUES (:u, now() + :max, :addr, :ua) RETURNING id"
        ),
        {
            "u": user.id,
            "max": SESSION_MAX_LIFETIME,
            "addr": client_addr,
            "ua": (user_agent or "")[:300],
        },
    )
    audit.record(
        session,
        "login",
        "auth_session",
        session_id,
        changes={"user_id": user.id, "client_addr": client_addr},
    )
    return _issue(session, user, str(session_id), secret, access_minutes)


def refresh(session: Session, refresh_token: str, *, secret: str, access_minutes: int) -> TokenPair:
    """Rotate: the presented token is spent and a new pair issued. A spent token presented
    again means it was stolen (or replayed): the whole session is revoked."""
    row = session.execute(
        text(
            "SELECT r.id, r.used_at, r.expires_at < now() AS expired, s.id AS sid, "
            "s.revoked_at, s.expires_at < now() AS session_expired, s.user_id "
            "FROM refresh_token r JOIN auth_session s ON s.id = r.session_id "
            "WHERE r.token_hash = :h"
        ),
        {"h": _digest(refresh_token)},
    ).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("The refresh token is not valid; log in again.")
    spent = (
        row.used_at is not None
        or session.execute(
            text("UPDATE refresh_token SET used_at = now() WHERE id = :id AND used_at IS NULL"),
            {"id": row.id},
        ).rowcount
        == 0
    )
    if spent:
        revoke_session(session, str(row.sid), "refresh token reused")
        audit.record(
            session, "refresh_token_reused", "auth_session", row.sid, changes={"revoked": True}
        )
        session.commit()
        raise Unauthorized(
            "This refresh token was already used: the session is revoked; log in again."
        )
    if row.expired or row.session_expired:
        raise Unauthorized("The refresh token has expired; log in again.")
    user = session.get(AppUser, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account is disabled.")
    return _issue(session, user, str(row.sid), secret, access_minutes)


def revoke_session(session: Session, session_id: str, reason: str) -> bool:
    return (
        session.execute(
            text(
                "UPDATE auth_session SET revoked_at = now(), revoked_reason = :r "
                "WHERE id = :id AND revoked_at IS NULL"
            ),
            {"id": session_id, "r": reason},
        ).rowcount
        > 0
    )


def revoke_user_sessions(session: Session, user_id: int, reason: str) -> int:
    return session.execute(
        text(
            "UPDATE auth_session SET revoked_at = now(), revoked_reason = :r "
            "WHERE user_id = :u AND revoked_at IS NULL"
        ),
        {"u": user_id, "r": reason},
    ).rowcount


def logout(session: Session, principal: Principal) -> None:
    if principal.session_id and revoke_session(session, principal.session_id, "logout"):
        audit.record(
            session, "logout", "auth_session", principal.session_id, changes={"revoked": True}
        )


def _issue(
    session: Session, user: AppUser, session_id: str, secret: str, access_minutes: int
) -> TokenPair:
    token = secrets.token_urlsafe(48)
    refresh_expires = session.scalar(
        text(
            "INSERT INTO refresh_token (session_id, token_hash, expires_at) "
            "VALUES (:s, :h, now() + :life) RETURNING expires_at"
        ),
        {"s": session_id, "h": _digest(token), "life": REFRESH_LIFETIME},
    )
    access, access_expires = issue_access_token(user, session_id, secret, access_minutes)
    return TokenPair(access, access_expires, token, refresh_expires, user)


def issue_access_token(
    user: AppUser, session_id: str, secret: str, minutes: int
) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=minutes)
    claims = {
        "iss": JWT_ISSUER,
        "sub": str(user.id),
        "sid": session_id,
        "role": user.role,
        "iat": now,
        "exp": expires,
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), expires


def decode_access_token(token: str, secret: str, now: float | None = None) -> tuple[int, str]:
    """(user id, session id) of a valid, unexpired access token.

    The signature and claims of a token are checked once per process (`_verified`: PyJWT
    spends ~0.1 ms per call, a good part of it checking the token's alphabet character by
    character); its expiry on every call."""
    user_id, sid, expires = _verified(token, secret)
    if expires <= (time.time() if now is None else now):  # PyJWT's rule: expired at exp
        raise Unauthorized("The access token has expired; refresh it or log in.")
    return user_id, sid


@lru_cache(maxsize=4096)
def _verified(token: str, secret: str) -> tuple[int, str, float]:
    """(user id, session id, expiry) of a token whose signature and claims are valid, expired
    or not. A failure raises, and is not cached."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "sid"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("The access token is invalid.") from exc
    sid = str(claims.get("sid"))
    exp = claims["exp"]
    if (
        claims.get("typ") != "access"
        or not str(claims["sub"]).isdigit()
        or not _is_uuid(sid)
        or isinstance(exp, bool)
        or not isinstance(exp, int | float)
        or not math.isfinite(exp)
    ):
        raise Unauthorized("The access token is invalid.")
    return int(claims["sub"]), sid, float(exp)


# every authenticated request runs it: prepared once per connection
_PRINCIPAL = "SELECT * FROM gp_principal(CAST(:uid AS int), CAST(:sid AS uuid))"


def load_principal(session: Session, user_id: int, session_id: str) -> Principal:
    if not 0 < user_id < 2**31:  # app_user.id is an integer (tokens are signed: belt and braces)
        raise Unauthorized("The session has ended (logged out, revoked or account disabled).")
    # every authenticated request runs this: a function keeps its plan (migration 0012)
    row = execute_prepared(session, _PRINCIPAL, {"sid": session_id, "uid": user_id}).first()
    if row is None:
        raise Unauthorized("The session has ended (logged out, revoked or account disabled).")
    return Principal(
        row.id,
        row.username,
        row.role,
        session_id,
        row.town_code,
        row.community_code,
        row.department_code,
    )


def _actor(session: Session, user: AppUser) -> audit.Actor:
    current = audit.actor_of(session)
    return audit.Actor(
        user.id,
        user.username,
        user.role,
        current.client_addr,
        current.request_id,
        current.device_lon,
        current.device_lat,
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
