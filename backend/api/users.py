"""Accounts (admin), readable by dispatchers within their territory and by auditors."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import SafeString
from backend.api.grid_schemas import CellOfWorkerSchema
from backend.api.personal import Personal
from backend.api.security import ANY_ROLE, DISPATCHERS, current_scope, requires
from backend.models import ROLES
from backend.services import roster, users
from backend.services.errors import InvalidInput
from backend.web import db_session

blp = Blueprint("users", __name__, url_prefix="/api/v1/users", description="Accounts")

READERS = ("admin", "auditor", *DISPATCHERS)
PHONE = validate.Regexp(r"^\+?[0-9][0-9 -]{5,30}$", error="Not a phone number.")


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String()
    display_name = fields.String()
    role = fields.String()
    town_code = fields.String(allow_none=True)
    community_code = fields.String(allow_none=True)
    department_code = fields.String(allow_none=True)
    phone = Personal("phone", owner_attr="id", allow_none=True)
    is_active = fields.Boolean()
    version = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class MeSchema(UserSchema):
    cells = fields.List(
        fields.Nested(CellOfWorkerSchema), metadata={"description": "a grid worker's cells"}
    )


class UserCreateSchema(Schema):
    username = SafeString(
        required=True,
        validate=validate.Regexp(
            r"^[A-Za-z0-9_.@-]{3,64}$", error="3–64 letters, digits or _ . @ -"
        ),
    )
    password = SafeString(required=True, load_only=True, validate=validate.Length(10, 256))
    role = SafeString(required=True, validate=validate.OneOf(ROLES))
    display_name = SafeString(load_default="", validate=validate.Length(0, 100))
    town_code = SafeString(allow_none=True, validate=validate.Regexp(r"^[0-9]{9}$"))
    community_code = SafeString(allow_none=True, validate=validate.Regexp(r"^[0-9]{12}$"))
    department_code = SafeString(allow_none=True, validate=validate.Length(1, 32))
    phone = SafeString(allow_none=True, validate=PHONE)


class UserUpdateSchema(Schema):
    password = SafeString(load_only=True, validate=validate.Length(10, 256))
    role = SafeString(validate=validate.OneOf(ROLES))
    display_name = SafeString(validate=validate.Length(0, 100))
    town_code = SafeString(allow_none=True, validate=validate.Regexp(r"^[0-9]{9}$"))
    community_code = SafeString(allow_none=True, validate=validate.Regexp(r"^[0-9]{12}$"))
    department_code = SafeString(allow_none=True, validate=validate.Length(1, 32))
    phone = SafeString(allow_none=True, validate=PHONE)
    is_active = fields.Boolean(
        metadata={"description": "false disables the account and ends its sessions"}
    )


class UserQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    role = SafeString(validate=validate.OneOf(ROLES))
    town = SafeString(validate=validate.Regexp(r"^[0-9]{9}$"))
    community = SafeString(validate=validate.Regexp(r"^[0-9]{12}$"))
    q = SafeString(validate=validate.Length(1, 64), metadata={"description": "name contains"})
    active = fields.Boolean()


def if_match_version() -> int | None:
    """The version a client saw, from `If-Match: "<version>"` (weak tags accepted)."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise InvalidInput(
            'If-Match must be the ETag of the resource, e.g. "3".',
            errors=[{"in": "header", "field": "If-Match", "messages": ["malformed"]}],
        )
    return int(value)


def _with_etag(user: Any) -> tuple[Any, int, dict[str, str]]:
    return user, 200, {"ETag": f'"{user.version}"'}


@blp.route("")
class Users(MethodView):
    @requires(*READERS)
    @blp.arguments(UserQuery, location="query")
    @blp.response(200, UserSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[Any]:
        """Accounts in your territory (all, for admins and auditors)."""
        found, total = users.list_users(
            db_session(),
            current_scope(),
            role=args.get("role"),
            town=args.get("town"),
            community=args.get("community"),
            q=args.get("q"),
            active=args.get("active"),
            offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return found

    @requires("admin")
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Create an account; territory by role (town, community, department)."""
        session = db_session()
        user = users.create_user(
            session, body.pop("username"), body.pop("password"), body.pop("role"), **body
        )
        session.commit()
        return user, 201, {"ETag": f'"{user.version}"', "Location": f"{request.path}/{user.id}"}


@blp.route("/<int:user_id>")
class User(MethodView):
    @requires(*READERS)
    @blp.response(200, UserSchema)
    def get(self, user_id: int) -> Any:
        """One account (404 outside your territory)."""
        return _with_etag(users.get_user(db_session(), user_id, current_scope()))

    @requires("admin")
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(412, description="If-Match is stale")
    @blp.alt_response(428, description="If-Match is missing")
    def patch(self, body: dict[str, Any], user_id: int) -> Any:
        """Update or disable (`is_active: false`) an account; needs `If-Match`."""
        session = db_session()
        user = users.update_user(session, user_id, if_match_version(), body, current_scope())
        session.commit()
        return _with_etag(user)


@blp.route("/<int:user_id>/cells")
class UserCells(MethodView):
    @requires(ANY_ROLE)
    @blp.response(200, CellOfWorkerSchema(many=True))
    def get(self, user_id: int) -> list[dict[str, Any]]:
        """The cells a grid worker walks (a worker sees only their own)."""
        return roster.worker_cells(db_session(), user_id, current_scope())
