"""Bearer-token authentication for views; every non-public endpoint declares its roles."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request

from backend.services.auth import Principal, decode_access_token
from backend.services.errors import Forbidden, Unauthorized

F = TypeVar("F", bound=Callable[..., Any])
ANY_ROLE = "*"


def current_principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send an access token as `Authorization: Bearer <token>`.")
        principal = decode_access_token(token.strip(), current_app.config["SECRET_KEY"])
        g.principal = principal
    return principal


def requires(*roles: str) -> Callable[[F], F]:
    """Allow the listed roles (or ANY_ROLE); records them for the OpenAPI and the route audit."""

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
