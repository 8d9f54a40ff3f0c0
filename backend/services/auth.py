"""Passwords (argon2id) and access tokens (JWT). Framework-free: the secret is passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import ROLES, AppUser
from backend.services.errors import InvalidInput, Unauthorized

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("timing-equaliser")
MIN_PASSWORD_LENGTH = 10
JWT_ALGORITHM = "HS256"
JWT_ISSUER = "gridpatrol"


@dataclass(frozen=True)
class Principal:
    """Who is acting: enough to scope queries without another database round trip."""

    user_id: int
    username: str
    role: str
    town_code: str | None = None
    community_code: str | None = None


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


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    *,
    display_name: str = "",
    town_code: str | None = None,
    community_code: str | None = None,
) -> AppUser:
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")
    if session.scalar(select(AppUser.id).where(AppUser.username == username)) is not None:
        raise InvalidInput(f"Username {username!r} is taken.")
    user = AppUser(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
        town_code=town_code,
        community_code=community_code,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> AppUser:
    user = session.scalar(select(AppUser).where(AppUser.username == username))
    try:
        if user is None:
            _hasher.verify(_DUMMY_HASH, password + "x")  # same cost whether the user exists
        elif user.is_active and _hasher.verify(user.password_hash, password):
            return user
    except (VerificationError, InvalidHashError):
        pass
    raise Unauthorized("Wrong username or password, or the account is disabled.")


def issue_access_token(user: AppUser, secret: str, minutes: int) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=minutes)
    claims = {
        "iss": JWT_ISSUER,
        "sub": str(user.id),
        "usr": user.username,
        "role": user.role,
        "town": user.town_code,
        "comm": user.community_code,
        "iat": now,
        "exp": expires,
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), expires


def decode_access_token(token: str, secret: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The access token has expired; log in or refresh it.") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The access token is invalid.") from exc
    if (
        claims.get("typ") != "access"
        or claims.get("role") not in ROLES
        or not str(claims["sub"]).isdigit()
    ):
        raise Unauthorized("The access token is invalid.")
    return Principal(
        user_id=int(claims["sub"]),
        username=str(claims.get("usr", "")),
        role=str(claims["role"]),
        town_code=claims.get("town"),
        community_code=claims.get("comm"),
    )
