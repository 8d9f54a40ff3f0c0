"""Permit types (许可证种类) as a code list: what findings, routing rules and permit
requirements name, with the department that issues each (docs/permits.md)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import SafeString
from backend.api.security import ANY_ROLE, requires
from backend.services import permit_types
from backend.web import db_session

blp = Blueprint(
    "permit_types",
    __name__,
    url_prefix="/api/v1/permit-types",
    description="Permit types: codes, names, aliases and the issuing department",
)
INDUSTRY = validate.Regexp(r"^[0-9]{1,4}$", error="a GB/T 4754 industry code, e.g. 5251")


class PermitTypeQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    industry = SafeString(
        validate=INDUSTRY,
        metadata={"description": "only the permits this industry code needs (by prefix)"},
    )
    include_inactive = fields.Boolean(load_default=False)


class RequirementSchema(Schema):
    industry_prefix = fields.String()
    note = fields.String(allow_none=True)
    legal_basis = fields.String(allow_none=True)


class PermitTypeSchema(Schema):
    code = fields.String(metadata={"description": "what outcomes, findings and rules name"})
    name = fields.String()
    aliases = fields.List(fields.String(), metadata={"description": "also accepted as input"})
    department_code = fields.String(metadata={"description": "the issuing department"})
    department_name = fields.String()
    legal_basis = fields.String(allow_none=True)
    active = fields.Boolean()
    version = fields.Integer()
    requirements = fields.List(
        fields.Nested(RequirementSchema),
        metadata={"description": "with `industry`: the requirement rows that apply"},
    )


@blp.route("")
class PermitTypes(MethodView):
    @requires(ANY_ROLE)
    @blp.arguments(PermitTypeQuery, location="query")
    @blp.response(200, PermitTypeSchema(many=True))
    def get(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Every permit type by code (a short code list, not paginated); with `industry`, the
        ones an entity of that industry needs (permit requirements by GB/T 4754 prefix)."""
        return permit_types.list_permit_types(
            db_session(),
            industry=args.get("industry"),
            include_inactive=args["include_inactive"],
        )
