"""Log in, refresh, log out, who am I. Registered under /api/v1/auth and, for the phone app,
/api/mobile/v1/auth (same views)."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import SafeString
from backend.api.security import ANY_ROLE, current_principal, public, requires
from backend.api.users import MeSchema
from backend.services import auth
from backend.services.roster import worker_cells
from backend.services.scope import scope_of
from backend.services.users import get_user
from backend.web import client_addr, db_session

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Authentication")


class LoginSchema(Schema):
    username = SafeString(required=True, validate=validate.Length(1, 64))
    password = SafeString(required=True, validate=validate.Length(1, 256), load_only=True)


class RefreshSchema(Schema):
    refresh_token = SafeString(required=True, validate=validate.Length(10, 200))


class TokenUserSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    display_name = fields.String()
    role = fields.String()


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_at = fields.DateTime(metadata={"description": "when the access token expires"})
    refresh_token = fields.String(metadata={"description": "single use; rotate with /refresh"})
    refresh_expires_at = fields.DateTime()
    user = fields.Nested(TokenUserSchema)


class _Me:
    """An account plus its cells, for MeSchema."""

    def __init__(self, user: Any, cells: list[dict[str, Any]]) -> None:
        self._user, self.cells = user, cells

    def __getattr__(self, name: str) -> Any:
        return getattr(self._user, name)


def _token_body(pair: auth.TokenPair) -> dict[str, Any]:
    return {
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_at": pair.access_expires_at,
        "refresh_token": pair.refresh_token,
        "refresh_expires_at": pair.refresh_expires_at,
        "user": pair.user,
    }


def _token_settings() -> dict[str, Any]:
    settings = current_app.config["GRIDPATROL_SETTINGS"]
    return {
        "secret": current_app.config["SECRET_KEY"],
        "access_minutes": settings.access_token_minutes,
    }


def register_auth_routes(target: Blueprint) -> None:
    """The same four views on any blueprint (web and phone)."""

    class Login(MethodView):
        @public
        @target.doc(security=[])
        @target.arguments(LoginSchema)
        @target.response(200, TokenSchema)
        @target.alt_response(401, description="Wrong credentials (problem+json)")
        @target.alt_response(429, description="Throttled; see Retry-After (problem+json)")
        def post(self, body: dict[str, Any]) -> dict[str, Any]:
            """Exchange username and password for an access token (15 min) and a refresh token.

            Repeated failures slow down, then lock the account (and the client address) for a
            while: 429 with Retry-After.
            """
            session = db_session()
            pair = auth.login(
                session,
                body["username"],
                body["password"],
                client_addr=client_addr(),
                user_agent=request.headers.get("User-Agent"),
                **_token_settings(),
            )
            session.commit()
            return _token_body(pair)

    class Refresh(MethodView):
        @public
        @target.doc(security=[])
        @target.arguments(RefreshSchema)
        @target.response(200, TokenSchema)
        @target.alt_response(401, description="Invalid, expired or reused token")
        def post(self, body: dict[str, Any]) -> dict[str, Any]:
            """Rotate a refresh token: it is spent, a new pair is issued. Presenting a spent
            token again revokes the whole session (it was stolen or replayed)."""
            session = db_session()
            pair = auth.refresh(session, body["refresh_token"], **_token_settings())
            session.commit()
            return _token_body(pair)

    class Logout(MethodView):
        @requires(ANY_ROLE)
        @target.response(204)
        def post(self) -> None:
            """End this session: its refresh tokens and access tokens stop working now."""
            session = db_session()
            auth.logout(session, current_principal())
            session.commit()

    class Me(MethodView):
        @requires(ANY_ROLE)
        @target.response(200, MeSchema)
        def get(self) -> Any:
            """Who am I: account, role, territory and (for grid workers) cells."""
            principal = current_principal()
            scope = scope_of(principal)
            session = db_session()
            user = get_user(session, principal.user_id, scope)
            return _Me(user, worker_cells(session, user.id, scope))

    for view, path in ((Login, "/login"), (Refresh, "/refresh"), (Logout, "/logout"), (Me, "/me")):
        view.__name__ = f"{target.name.title()}{view.__name__}"
        target.route(path, endpoint=path.strip("/"))(view)


register_auth_routes(blp)
