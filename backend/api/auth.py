"""Log in with username and password; get a short-lived bearer token."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import SafeString
from backend.api.security import public
from backend.services.auth import authenticate, issue_access_token
from backend.web import db_session

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Authentication")


class LoginSchema(Schema):
    username = SafeString(required=True, validate=validate.Length(1, 64))
    password = SafeString(required=True, validate=validate.Length(1, 256), load_only=True)


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_at = fields.DateTime()
    role = fields.String()


def login(username: str, password: str) -> dict[str, Any]:
    settings = current_app.config["GRIDPATROL_SETTINGS"]
    user = authenticate(db_session(), username, password)
    token, expires = issue_access_token(
        user, current_app.config["SECRET_KEY"], settings.access_token_minutes
    )
    return {"access_token": token, "token_type": "Bearer", "expires_at": expires, "role": user.role}


@blp.route("/login")
class Login(MethodView):
    @public
    @blp.doc(security=[])
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, description="Wrong credentials (problem+json)")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Exchange username and password for an access token (JWT, 15 minutes)."""
        return login(body["username"], body["password"])
