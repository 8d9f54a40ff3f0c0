"""Bearer-token authentication for views; every endpoint declares who may call it.

The token names a session; the principal (role, territory) is read from the database on each
request, and becomes the audit actor of the request's Session.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request

from backend.services import audit
from backend.services.auth import Principal, decode_access_token, load_principal
from backend.services.errors import Forbidden, Unauthorized
from backend.services.scope import Scope, scope_of
from backend.web import db_session

F = TypeVar("F", bound=Callable[..., Any])
ANY_ROLE = "*"
DISPATCHERS = ("city_dispatcher", "town_dispatcher", "community_dispatcher")


def current_principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send an access token as `Authorization: Bearer <token>`.")
        user_id, session_id = decode_access_token(token.strip(), current_app.config["SECRET_KEY"])
        session = db_session()
        principal = load_principal(session, user_id, session_id)
        g.principal = principal
        base = audit.actor_of(session)
        audit.set_actor(
            session,
            audit.Actor(
                principal.user_id,
                principal.username,
                principal.role,
                base.client_addr,
                base.request_id,
                base.device_lon,
                base.device_lat,
            ),
        )
    return principal


def current_scope() -> Scope:
    return scope_of(current_principal())


def requires(*roles: str) -> Callable[[F], F]:
    """Allow the listed roles (or ANY_ROLE); the roles are kept on the view for the route
    matrix test and the docs."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if ANY_ROLE not in roles and principal.role not in roles:
                raise Forbidden(f"This action needs one of the roles: {', '.join(roles)}.")
            return view(*args, **kwargs)

        wrapper._gridpatrol_roles = roles  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def public(view: F) -> F:
    """Mark an endpoint as deliberately public (health, login); pair with doc(security=[])."""
    view._gridpatrol_roles = ("public",)  # type: ignore[attr-defined]
    return view
