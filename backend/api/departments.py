"""Departments as data: everyone signed in may list them; admins add, change and deactivate
them (`If-Match`; audited). Only admins see webhook URLs; nobody sees a webhook secret."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import SafeString
from backend.api.security import DISPATCHERS, current_principal, requires
from backend.api.users import if_match_version
from backend.services import departments
from backend.services.versioning import require_version
from backend.web import db_session

blp = Blueprint(
    "departments",
    __name__,
    url_prefix="/api/v1/departments",
    description="Departments: the data routing rules and referrals point at",
)
READERS = ("admin", "auditor", "department_officer", "grid_worker", *DISPATCHERS)
CODE = validate.Regexp(
    departments.CODE.pattern,
    error="2 to 32 capital letters, digits or _, starting with a letter (e.g. SAMR)",
)
POLICY = (
    "Checked against the webhook policy (docs/webhooks.md): https, a public host — http and "
    "private addresses only for hosts in GRIDPATROL_WEBHOOK_ALLOW; null removes the webhook."
)


class DepartmentSchema(Schema):
    code = fields.String()
    name = fields.String()
    town_branches = fields.Boolean()
    active = fields.Boolean(metadata={"description": "inactive: out of routing and the lists"})
    has_webhook = fields.Boolean()
    webhook_url = fields.String(
        allow_none=True, metadata={"description": "admins only (others see has_webhook)"}
    )
    version = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class DepartmentQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    include_inactive = fields.Boolean(
        load_default=False, metadata={"description": "list deactivated departments too"}
    )


class _Writable(Schema):
    name = SafeString(validate=validate.Length(1, departments.NAME_MAX))
    town_branches = fields.Boolean()
    webhook_url = SafeString(
        allow_none=True, validate=validate.Length(1, 2000), metadata={"description": POLICY}
    )
    webhook_secret = SafeString(
        allow_none=True,
        load_only=True,
        validate=validate.Length(departments.SECRET_MIN, departments.SECRET_MAX),
        metadata={"description": "signs every delivery; never shown"},
    )


class DepartmentCreate(_Writable):
    code = SafeString(required=True, validate=CODE)
    name = SafeString(required=True, validate=validate.Length(1, departments.NAME_MAX))
    active = fields.Boolean(load_default=True)


class DepartmentPatch(_Writable):
    active = fields.Boolean(
        metadata={
            "description": "false deactivates (409 while active routing rules point here); "
            "true reactivates"
        }
    )


def _is_admin() -> bool:
    return current_principal().role == "admin"


def _with_etag(row: dict[str, Any], status: int = 200) -> tuple[Any, int, dict[str, str]]:
    return row, status, {"ETag": f'"{row["version"]}"'}


@blp.route("")
class Departments(MethodView):
    @requires(*READERS)
    @blp.arguments(DepartmentQuery, location="query")
    @blp.response(200, DepartmentSchema(many=True))
    def get(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Departments by code, active ones unless `include_inactive`. `webhook_url` for
        admins only (everyone sees `has_webhook`); webhook secrets are never shown."""
        return departments.list_departments(
            db_session(),
            include_inactive=args["include_inactive"],
            with_webhook_url=_is_admin(),
        )

    @requires("admin")
    @blp.arguments(DepartmentCreate)
    @blp.response(201, DepartmentSchema)
    @blp.alt_response(409, description="the code or the name is taken")
    def post(self, body: dict[str, Any]) -> Any:
        """Add a department (audited); 409 when its code or name is taken, 422 when its
        webhook URL is refused by the policy."""
        session = db_session()
        row = departments.create_department(session, body)
        session.commit()
        return _with_etag(row, 201)


@blp.route("/<code>")
class Department(MethodView):
    @requires(*READERS)
    @blp.response(200, DepartmentSchema)
    def get(self, code: str) -> Any:
        """One department (with its ETag), deactivated ones too."""
        return _with_etag(
            departments.get_department(db_session(), code, with_webhook_url=_is_admin())
        )

    @requires("admin")
    @blp.arguments(DepartmentPatch)
    @blp.response(200, DepartmentSchema)
    @blp.alt_response(409, description="deactivating while active routing rules point here")
    @blp.alt_response(412, description="changed since the version in If-Match")
    def patch(self, body: dict[str, Any], code: str) -> Any:
        """Change a department's name, town branches, webhook URL and secret, or deactivate
        (`active: false`) and reactivate it (`If-Match`; audited). A department is never
        deleted; deactivating one that active routing rules point at is a 409 naming them."""
        session = db_session()
        row = departments.update_department(
            session, code, require_version(if_match_version(), "department"), body
        )
        session.commit()
        return _with_etag(row)
