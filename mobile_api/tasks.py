"""The grid worker's day on the phone: tasks near me, accept / decline / check in, photos,
submissions (idempotent by the phone's id) and a day's offline queue, leads."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest.fields import Upload
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import Crs, SafeString
from backend.api.permit_types import PermitTypeQuery, PermitTypeSchema
from backend.api.security import current_principal, current_scope, requires
from backend.api.task_schemas import TaskDetailSchema
from backend.services import attachments, leads, permit_types, submissions, tasks
from backend.services.errors import InvalidInput
from backend.services.storage import storage_from_env
from backend.web import db_session, read_only

blp = Blueprint(
    "mobile_tasks",
    __name__,
    url_prefix="/api/mobile/v1",
    description="The grid worker's tasks on the phone (coordinates default to GCJ-02)",
)
WORKER = "grid_worker"
MAX_SYNC = 200


class NearQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    lon = fields.Float(validate=validate.Range(-180, 180), allow_nan=False)
    lat = fields.Float(validate=validate.Range(-90, 90), allow_nan=False)
    crs = Crs(load_default="gcj02")


class NearEntitySchema(Schema):
    id = fields.Integer()
    uscc = fields.String()
    name = fields.String()
    registered_address = fields.String()
    business_address = fields.String(allow_none=True)


class NearTaskSchema(Schema):
    """A task in the near-me list: what the phone shows in a list row and needs to act on it
    (`version` for If-Match). The whole task, its entity and its history: `GET /tasks/{id}`.
    Kept short on purpose: 50 full tasks were ~38 KB per refresh."""

    id = fields.Integer()
    type = fields.String()
    status = fields.String()
    entity_id = fields.Integer(allow_none=True)
    lead_id = fields.Integer(allow_none=True)
    entity = fields.Nested(NearEntitySchema, allow_none=True)
    due_on = fields.Date()
    due_approximate = fields.Boolean(
        metadata={"description": "counted Monday-Friday: no holiday calendar for that year"}
    )
    overdue = fields.Boolean()
    status_reason = fields.String(allow_none=True, metadata={"description": "e.g. why returned"})
    distance_m = fields.Float(
        allow_none=True, metadata={"description": "from lon/lat, on the ellipsoid"}
    )
    lon = fields.Float(allow_none=True, metadata={"description": "CGCS2000 (= WGS84)"})
    lat = fields.Float(allow_none=True, metadata={"description": "CGCS2000 (= WGS84)"})
    version = fields.Integer()


class DeclineBody(Schema):
    reason = SafeString(required=True, validate=validate.Length(1, 500))


class CheckInBody(Schema):
    lon = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    crs = Crs(load_default="gcj02")
    accuracy_m = fields.Float(validate=validate.Range(0, 10_000), allow_nan=False)
    device_time = fields.AwareDateTime()
    reason = SafeString(
        validate=validate.Length(1, 500),
        metadata={"description": "why you check in outside the geofence (flagged for review)"},
    )


class CheckInSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    version = fields.Integer()
    distance_m = fields.Float(allow_none=True)
    flagged = fields.Boolean()


class TaskStateSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    version = fields.Integer()


class PointBody(Schema):
    lon = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    crs = Crs(load_default="gcj02")
    accuracy_m = fields.Float(validate=validate.Range(0, 10_000), allow_nan=False)


class SubmissionBody(Schema):
    id = fields.UUID(required=True, metadata={"description": "made by the phone, once"})
    task_id = fields.Integer(required=True, validate=validate.Range(1, 2**62))
    outcome = fields.Dict(required=True, metadata={"description": "per task type"})
    point = fields.Nested(PointBody)
    captured_at = fields.AwareDateTime()
    attachment_ids = fields.List(
        fields.Integer(validate=validate.Range(1, 2**62)), validate=validate.Length(max=20)
    )


class SubmissionAnswer(Schema):
    id = fields.String()
    task = fields.Dict()
    findings = fields.List(fields.Dict())


class SyncBody(Schema):
    submissions = fields.List(
        fields.Raw(),
        required=True,
        validate=validate.Length(1, MAX_SYNC),
        metadata={"description": f"up to {MAX_SYNC} submissions, as for POST /submissions"},
    )


class SyncAnswer(Schema):
    results = fields.List(
        fields.Dict(), metadata={"description": "per item: id, status, result or problem"}
    )


class PhotoUpload(Schema):
    file = Upload(required=True, metadata={"description": "JPEG, PNG or HEIC, up to 10 MB"})


class AttachmentSchema(Schema):
    id = fields.Integer()
    sha256 = fields.String()
    mime = fields.String()
    size_bytes = fields.Integer()
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    taken_at = fields.DateTime(allow_none=True)
    exif_lon = fields.Float(allow_none=True)
    exif_lat = fields.Float(allow_none=True)
    uploaded_at = fields.DateTime()


class LeadBody(Schema):
    lon = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    crs = Crs(load_default="gcj02")
    description = SafeString(required=True, validate=validate.Length(1, 1000))
    attachment_ids = fields.List(
        fields.Integer(validate=validate.Range(1, 2**62)), validate=validate.Length(max=20)
    )


class LeadSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    duplicate_of = fields.Integer(allow_none=True, metadata={"description": "linked to"})
    cell_code = fields.String(allow_none=True)
    task_id = fields.Integer(allow_none=True)
    lon = fields.Float()
    lat = fields.Float()


def _here(args: dict[str, Any]) -> tuple[float | None, float | None]:
    if ("lon" in args) != ("lat" in args):
        raise InvalidInput("Give both lon and lat, or neither.")
    if "lon" not in args:
        return None, None
    return submissions.to_cgcs2000_point(args["lon"], args["lat"], args["crs"])


@blp.route("/tasks")
class Tasks(MethodView):
    @read_only
    @requires(WORKER)
    @blp.arguments(NearQuery, location="query")
    @blp.response(200, NearTaskSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=200)
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> Any:
        """Your tasks in hand, nearest first from `lon`/`lat` (metres on the ellipsoid), with
        the entity, due date and overdue flag. Send `If-None-Match` with the last ETag: an
        unchanged list answers 304 with no body."""
        lon, lat = _here(args)
        body, total = tasks.near_me(
            db_session(),
            current_principal().user_id,
            lon,
            lat,
            offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        etag = hashlib.sha256(f"{total}:{body}".encode()).hexdigest()[:32]
        # X-Pagination is added by @blp.paginate from item_count
        headers = {"ETag": f'"{etag}"', "Cache-Control": "private, no-cache"}
        if request.if_none_match.contains(etag):
            return Response(status=304, headers=headers)
        return Response(body, mimetype="application/json", headers=headers)


@blp.route("/tasks/<int:task_id>")
class Task(MethodView):
    @requires(WORKER)
    @blp.response(200, TaskDetailSchema)
    def get(self, task_id: int) -> Any:
        """One of your tasks: its entity, earlier submissions and findings for it; for a
        `license_check`, `permit_types`: the permits the entity's industry needs (the pick list
        for `permits_needed` / `permits_shown`; all codes: `GET /permit-types`)."""
        session = db_session()
        task = tasks.get_task(session, task_id, current_scope())
        industry = (task.get("entity") or {}).get("industry_code")
        if task["type"] == "license_check":
            task["permit_types"] = (
                permit_types.list_permit_types(session, industry=industry) if industry else []
            )
        return task, 200, {"ETag": f'"{task["version"]}"'}


class PhonePermitTypeSchema(PermitTypeSchema):
    """The phone's pick list: the API's permit-type schema without the admin's fields."""

    class Meta:
        fields = ("code", "name", "aliases", "department_code", "department_name")


@blp.route("/permit-types")
class PermitTypes(MethodView):
    @read_only
    @requires(WORKER)
    @blp.arguments(PermitTypeQuery(only=("industry",)), location="query")
    @blp.response(200, PhonePermitTypeSchema(many=True))
    def get(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The permit types to pick from in a `license_check` outcome (send their codes), all
        of them or, with `industry`, those that industry needs."""
        return permit_types.list_permit_types(db_session(), industry=args.get("industry"))


def _act(task_id: int, action: str, reason: str | None = None) -> dict[str, Any]:
    session = db_session()
    row = tasks.transition(session, task_id, action, current_scope(), reason=reason)
    session.commit()
    return row


@blp.route("/tasks/<int:task_id>/accept")
class Accept(MethodView):
    @requires(WORKER)
    @blp.response(200, TaskStateSchema)
    def post(self, task_id: int) -> dict[str, Any]:
        """Accept an assigned task (409 when it is no longer assigned to you)."""
        return _act(task_id, "accept")


@blp.route("/tasks/<int:task_id>/decline")
class Decline(MethodView):
    @requires(WORKER)
    @blp.arguments(DeclineBody)
    @blp.response(200, TaskStateSchema)
    def post(self, body: dict[str, Any], task_id: int) -> dict[str, Any]:
        """Decline a task, with a reason: it goes back to the dispatcher's queue."""
        return _act(task_id, "decline", body["reason"])


@blp.route("/tasks/<int:task_id>/check-in")
class CheckIn(MethodView):
    @requires(WORKER)
    @blp.arguments(CheckInBody)
    @blp.response(200, CheckInSchema)
    def post(self, body: dict[str, Any], task_id: int) -> dict[str, Any]:
        """Check in on site. Beyond the geofence (150 m plus your accuracy) it is refused
        with the distance, unless you give a reason; then it is flagged for review."""
        session = db_session()
        row = submissions.check_in(
            session,
            task_id,
            current_scope(),
            lon=body["lon"],
            lat=body["lat"],
            crs=body["crs"],
            accuracy_m=body.get("accuracy_m"),
            device_time=body.get("device_time"),
            reason=body.get("reason"),
            geofence_m=current_app.config.get("GRIDPATROL_GEOFENCE_M", submissions.GEOFENCE_M),
        )
        session.commit()
        return row


@blp.route("/attachments")
class Attachments(MethodView):
    @requires(WORKER)
    @blp.arguments(PhotoUpload, location="form_and_files")
    @blp.response(201, AttachmentSchema)
    @blp.alt_response(200, schema=AttachmentSchema, description="the same photo again")
    def post(self, form: dict[str, Any]) -> Any:
        """Upload a photo (JPEG, PNG or HEIC, checked by content; up to 10 MB). The same bytes
        again answer 200 with the first upload. EXIF time and position are kept."""
        data = form["file"].read(attachments.MAX_PHOTO_BYTES + 1)
        session = db_session()
        created, row = attachments.store_photo(
            session, storage_from_env(), current_principal().user_id, data
        )
        session.commit()
        return row, 201 if created else 200


# one instance for all items of a sync (up to 200): making a schema deep-copies its fields
_SUBMISSION_BODY = SubmissionBody()


def _load_submission(raw: Any) -> tuple[dict[str, Any] | None, Any]:
    if not isinstance(raw, dict):
        return None, [{"field": "submission", "messages": ["must be an object"]}]
    try:
        return _SUBMISSION_BODY.load(raw), None
    except ValidationError as exc:
        return None, [{"field": k, "messages": v} for k, v in exc.messages.items()]


@blp.route("/submissions")
class Submissions(MethodView):
    @requires(WORKER)
    @blp.arguments(SubmissionBody)
    @blp.response(201, SubmissionAnswer)
    @blp.alt_response(200, schema=SubmissionAnswer, description="a replay: the first answer")
    @blp.alt_response(409, description="the same id with another body, or not checked in")
    def post(self, body: dict[str, Any]) -> Any:
        """Submit a task's outcome. `id` is the phone's own UUID: sending the same submission
        again (the answer was lost) returns the first answer; the same id with a different
        body is 409. Findings, written notices and re-inspection tasks come with the answer."""
        session = db_session()
        status, answer = submissions.submit(
            session, current_scope(), body, request.get_json(silent=True) or {}
        )
        session.commit()
        return answer, status


@blp.route("/sync")
class Sync(MethodView):
    @requires(WORKER)
    @blp.arguments(SyncBody)
    @blp.response(200, SyncAnswer)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """A day's queue after being offline: up to 200 submissions. Each succeeds or fails on
        its own (a per-item status and answer or problem); none is half-applied."""
        session = db_session()
        items = []
        for raw in body["submissions"]:
            loaded, errors = _load_submission(raw)
            items.append((loaded, raw if isinstance(raw, dict) else {}, errors))
        results = submissions.sync(session, current_scope(), items)
        session.commit()
        return {"results": results}


@blp.route("/leads")
class Leads(MethodView):
    @requires(WORKER)
    @blp.arguments(LeadBody)
    @blp.response(201, LeadSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Report a lead of unlicensed operation: placed in its cell and given to its worker
        as an `unlicensed_lead` task — or, when an open lead lies within 30 m, linked to it."""
        session = db_session()
        lead = leads.report_lead(
            session,
            current_principal().user_id,
            lon=body["lon"],
            lat=body["lat"],
            crs=body["crs"],
            description=body["description"],
            attachment_ids=body.get("attachment_ids"),
        )
        session.commit()
        return lead
