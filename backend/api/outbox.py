"""The outbox to departments' own systems: what was sent, what failed, and replaying the
dead-lettered events (admins; auditors may read). Departments' webhook secrets never
appear here; when the webhook policy refused a delivery, auditors read "refused by policy" and
only admins see which address and why (`policy_detail`)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import SafeString
from backend.api.security import current_principal, requires
from backend.services import outbox
from backend.web import db_session

MAX_REPLAY = 1000

blp = Blueprint(
    "outbox",
    __name__,
    url_prefix="/api/v1/outbox",
    description="Webhook deliveries to departments' systems: the outbox and its dead letters",
)


class OutboxQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    status = SafeString(validate=validate.OneOf(outbox.STATUSES))
    department = SafeString(
        validate=validate.Length(1, 32), metadata={"description": "department code"}
    )


class OutboxEventSchema(Schema):
    event_id = fields.UUID(metadata={"description": "receivers dedupe on it"})
    department = fields.String(allow_none=True)
    event_type = fields.String()
    payload = fields.Dict()
    status = fields.String(metadata={"description": " | ".join(outbox.STATUSES)})
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime()
    last_error = fields.String(allow_none=True)
    policy_detail = fields.String(
        allow_none=True,
        metadata={
            "description": "admins only: which address the webhook policy refused and why "
            '(last_error says "refused by policy")'
        },
    )
    created_at = fields.DateTime()
    delivered_at = fields.DateTime(allow_none=True)


class ReplayBody(Schema):
    event_ids = fields.List(
        fields.UUID(),
        required=True,
        validate=validate.Length(1, MAX_REPLAY),
        metadata={"description": f"dead events to send again (1 to {MAX_REPLAY})"},
    )


class ReplayResultSchema(Schema):
    replayed = fields.Integer(metadata={"description": "how many went back to pending"})
    replayed_ids = fields.List(fields.UUID())
    not_replayed = fields.List(
        fields.UUID(), metadata={"description": "unknown ids and events that are not dead"}
    )


@blp.route("")
class OutboxEvents(MethodView):
    @requires("admin", "auditor")
    @blp.arguments(OutboxQuery, location="query")
    @blp.response(200, OutboxEventSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[dict[str, Any]]:
        """Outbox events, newest first, with their payloads; filter by status (e.g. `dead`)
        and department."""
        events, total = outbox.list_events(
            db_session(),
            status=args.get("status"),
            department=args.get("department"),
            offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
            with_policy_detail=current_principal().role == "admin",
        )
        pagination_parameters.item_count = total
        return events


@blp.route("/replay")
class Replay(MethodView):
    @requires("admin")
    @blp.arguments(ReplayBody)
    @blp.response(200, ReplayResultSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send dead-lettered events again: each goes back to pending with its attempts reset
        (audited); ids that are unknown or not dead are listed as not replayed."""
        session = db_session()
        asked = list(dict.fromkeys(body["event_ids"]))
        replayed = outbox.replay_events(session, asked)
        session.commit()
        done = set(replayed)
        return {
            "replayed": len(replayed),
            "replayed_ids": replayed,
            "not_replayed": [i for i in asked if i not in done],
        }
