"""Task representations shared by the dispatchers' and the phone's APIs."""

from __future__ import annotations

from marshmallow import Schema, fields


class TaskSchema(Schema):
    id = fields.Integer()
    type = fields.String()
    status = fields.String()
    origin = fields.String(metadata={"description": "the rule or event that made it"})
    campaign = fields.String(allow_none=True)
    entity_id = fields.Integer(allow_none=True)
    lead_id = fields.Integer(allow_none=True)
    finding_id = fields.Integer(allow_none=True, metadata={"description": "for a 复查"})
    entity = fields.Dict(allow_none=True, metadata={"description": "summary"})
    cell_code = fields.String(allow_none=True)
    community_code = fields.String(allow_none=True)
    town_code = fields.String(allow_none=True)
    assignee_id = fields.Integer(allow_none=True)
    due_on = fields.Date()
    due_approximate = fields.Boolean(
        metadata={"description": "counted Monday-Friday: no holiday calendar for that year"}
    )
    overdue = fields.Boolean()
    status_reason = fields.String(allow_none=True)
    checkin_at = fields.DateTime(allow_none=True)
    checkin_distance_m = fields.Float(allow_none=True)
    checkin_flag = fields.String(allow_none=True, metadata={"description": "to review"})
    lon = fields.Float(allow_none=True)
    lat = fields.Float(allow_none=True)
    version = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class TaskDetailSchema(TaskSchema):
    submissions = fields.List(fields.Dict(), metadata={"description": "for the same subject"})
    findings = fields.List(fields.Dict())
    permit_types = fields.List(
        fields.Dict(),
        metadata={
            "description": "license_check on the phone: the permits the entity's industry "
            "needs (code, name, aliases, issuing department)"
        },
    )
