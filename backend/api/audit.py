"""The audit trail, for admins and auditors."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import SafeString
from backend.api.security import requires
from backend.services import audit
from backend.web import db_session

blp = Blueprint(
    "audit",
    __name__,
    url_prefix="/api/v1/audit",
    description="Append-only audit trail (执法全过程记录)",
)


class AuditQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    object_type = SafeString(validate=validate.Length(1, 64), metadata={"example": "cell"})
    object_id = SafeString(validate=validate.Length(1, 128))
    actor = SafeString(
        validate=validate.Length(1, 64), metadata={"description": "username or user id"}
    )
    action = SafeString(validate=validate.Length(1, 64))
    since = fields.AwareDateTime(metadata={"description": "ISO 8601 with offset"})
    until = fields.AwareDateTime()


class AuditEventSchema(Schema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    actor_user_id = fields.Integer(allow_none=True)
    actor_username = fields.String()
    actor_role = fields.String()
    client_addr = fields.String(allow_none=True)
    device_location = fields.Dict(allow_none=True, metadata={"description": "GeoJSON Point"})
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    changes = fields.Dict(metadata={"description": "changed fields: {field: {from, to}}"})
    request_id = fields.String(allow_none=True)


@blp.route("")
class AuditEvents(MethodView):
    @requires("admin", "auditor")
    @blp.arguments(AuditQuery, location="query")
    @blp.response(200, AuditEventSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[dict[str, Any]]:
        """Audit events, newest first."""
        events, total = audit.list_events(
            db_session(),
            offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
            **args,
        )
        pagination_parameters.item_count = total
        return events
