"""Patrol tasks for the dispatch center: list, read, (re)assign single and bulk, review,
cancel, and run the generation rules."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from backend.api.blueprint import Blueprint
from backend.api.bulk import each_on_its_own
from backend.api.entities import ImportJobSchema
from backend.api.fields import SafeString
from backend.api.security import DISPATCHERS, current_principal, current_scope, requires
from backend.api.task_schemas import TaskDetailSchema, TaskSchema
from backend.api.users import if_match_version
from backend.domain.tasks import TASK_TYPES
from backend.services import import_jobs, leads, task_rules, tasks
from backend.services.versioning import require_version
from backend.web import db_session

blp = Blueprint("tasks", __name__, url_prefix="/api/v1/tasks", description="Patrol tasks")
leads_blp = Blueprint("leads", __name__, url_prefix="/api/v1/leads", description="Leads (线索)")
READERS = ("admin", "auditor", *DISPATCHERS)
STATUSES = (
    "open",
    "assigned",
    "accepted",
    "in_progress",
    "submitted",
    "closed",
    "declined",
    "returned",
    "cancelled",
)


class TaskQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    type = SafeString(validate=validate.OneOf(TASK_TYPES))
    status = SafeString(validate=validate.OneOf(STATUSES))
    cell_code = SafeString(validate=validate.Length(1, 32))
    community_code = SafeString(validate=validate.Regexp(r"^[0-9]{12}$"))
    town_code = SafeString(validate=validate.Regexp(r"^[0-9]{9}$"))
    assignee_id = fields.Integer(validate=validate.Range(1, 2**31 - 1))
    queued = fields.Boolean(metadata={"description": "open or declined: waiting for a worker"})
    overdue = fields.Boolean()
    campaign = SafeString(validate=validate.Length(1, 40))


class AssignBody(Schema):
    assignee_id = fields.Integer(validate=validate.Range(1, 2**31 - 1))
    cell_code = SafeString(
        validate=validate.Length(1, 32), metadata={"description": "to the cell's primary worker"}
    )

    @validates_schema
    def _one_target(self, data: dict[str, Any], **_: Any) -> None:
        if ("assignee_id" in data) == ("cell_code" in data):
            raise ValidationError("give either assignee_id or cell_code", "assignee_id")


class TaskRef(Schema):
    id = fields.Integer(required=True, validate=validate.Range(1, 2**62))
    version = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1))


class BulkAssignBody(AssignBody):
    tasks = fields.List(fields.Nested(TaskRef), required=True, validate=validate.Length(1, 1000))


class ReasonBody(Schema):
    reason = SafeString(required=True, validate=validate.Length(1, 500))


class TransitionSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    version = fields.Integer()
    assignee_id = fields.Integer(allow_none=True)


class BulkResultSchema(Schema):
    results = fields.List(fields.Dict(), metadata={"description": "per task: status, answer"})


class GenerateBody(Schema):
    rule = SafeString(
        required=True,
        validate=validate.OneOf(
            ["first_inspection", "licence_checks", "unmatched_addresses", "annual_report_campaign"]
        ),
    )
    year = fields.Integer(
        validate=validate.Range(2000, 2100), metadata={"description": "annual reports: the year"}
    )
    start = fields.Date(metadata={"description": "annual reports: campaign start (default today)"})
    since = fields.Date(metadata={"description": "first inspection: established on or after"})

    @validates_schema
    def _year(self, data: dict[str, Any], **_: Any) -> None:
        if data["rule"] == "annual_report_campaign" and "year" not in data:
            raise ValidationError("the annual-report campaign needs the year", "year")


@blp.route("")
class Tasks(MethodView):
    @requires(*READERS)
    @blp.arguments(TaskQuery, location="query")
    @blp.response(200, TaskSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[dict[str, Any]]:
        """Tasks in your territory, by due date."""
        rows, total = tasks.list_tasks(
            db_session(),
            current_scope(),
            offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
            **args,
        )
        pagination_parameters.item_count = total
        return rows


@blp.route("/<int:task_id>")
class Task(MethodView):
    @requires(*READERS)
    @blp.response(200, TaskDetailSchema)
    def get(self, task_id: int) -> Any:
        """One task with the submissions and findings about its subject (404 outside your
        territory)."""
        task = tasks.get_task(db_session(), task_id, current_scope())
        return task, 200, {"ETag": f'"{task["version"]}"'}


@blp.route("/<int:task_id>/assign")
class Assign(MethodView):
    @requires("admin", *DISPATCHERS)
    @blp.arguments(AssignBody)
    @blp.response(200, TransitionSchema)
    @blp.alt_response(409, description="the task's status does not allow it")
    @blp.alt_response(412, description="If-Match is stale")
    def post(self, body: dict[str, Any], task_id: int) -> dict[str, Any]:
        """(Re)assign a task to a worker of your territory or to a cell's primary worker;
        `If-Match` with the task's ETag."""
        session = db_session()
        row = tasks.assign_to(
            session,
            task_id,
            current_scope(),
            expected_version=require_version(if_match_version(), "task"),
            worker_id=body.get("assignee_id"),
            cell_code=body.get("cell_code"),
        )
        session.commit()
        return row


@blp.route("/assign")
class BulkAssign(MethodView):
    @requires("admin", *DISPATCHERS)
    @blp.arguments(BulkAssignBody)
    @blp.response(200, BulkResultSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """(Re)assign many tasks, each with the version you saw: each succeeds or fails on its
        own (404, 409, 412) and the answer says which."""
        session = db_session()
        results = each_on_its_own(
            session,
            body["tasks"],
            lambda ref: tasks.assign_to(
                session,
                ref["id"],
                current_scope(),
                expected_version=ref["version"],
                worker_id=body.get("assignee_id"),
                cell_code=body.get("cell_code"),
            ),
        )
        session.commit()
        return {"results": results}


def _review(task_id: int, action: str, reason: str | None = None) -> dict[str, Any]:
    session = db_session()
    row = tasks.transition(
        session,
        task_id,
        action,
        current_scope(),
        expected_version=require_version(if_match_version(), "task"),
        reason=reason,
        extra_sql=", closed_at = now()" if action == "close" else "",
    )
    session.commit()
    return row


@blp.route("/<int:task_id>/close")
class Close(MethodView):
    @requires("admin", *DISPATCHERS)
    @blp.response(200, TransitionSchema)
    def post(self, task_id: int) -> dict[str, Any]:
        """Accept a submitted task's work and close it (`If-Match`)."""
        return _review(task_id, "close")


@blp.route("/<int:task_id>/return")
class Return(MethodView):
    @requires("admin", *DISPATCHERS)
    @blp.arguments(ReasonBody)
    @blp.response(200, TransitionSchema)
    def post(self, body: dict[str, Any], task_id: int) -> dict[str, Any]:
        """Send a submitted task back to its worker, with a reason (`If-Match`)."""
        return _review(task_id, "return", body["reason"])


@blp.route("/<int:task_id>/cancel")
class Cancel(MethodView):
    @requires("admin", *DISPATCHERS)
    @blp.arguments(ReasonBody)
    @blp.response(200, TransitionSchema)
    def post(self, body: dict[str, Any], task_id: int) -> dict[str, Any]:
        """Cancel a live task, with a reason (`If-Match`)."""
        return _review(task_id, "cancel", body["reason"])


@blp.route("/generate")
class Generate(MethodView):
    @requires("admin", "city_dispatcher")
    @blp.arguments(GenerateBody)
    @blp.response(202, ImportJobSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Queue a generation rule, city-wide (a campaign may make hundreds of thousands of
        tasks: `gridpatrol worker` runs it). Idempotent: a second run makes nothing new. The
        job's report says how many tasks of each type were made."""
        options: dict[str, Any] = {}
        if body["rule"] == "annual_report_campaign":
            start = task_rules.check_campaign(body["year"], body.get("start"))
            options = {"year": body["year"], "start": start.isoformat()}
        elif body["rule"] == "first_inspection" and "since" in body:
            options = {"since": body["since"].isoformat()}
        session = db_session()
        job = import_jobs.submit_rule(session, body["rule"], options, current_principal().user_id)
        session.commit()
        return job, 202, {"Location": f"{request.path}/{job.id}"}


@blp.route("/generate/<int:job_id>")
class GenerateJob(MethodView):
    @requires("admin", "city_dispatcher")
    @blp.response(200, ImportJobSchema)
    def get(self, job_id: int) -> Any:
        """A queued generation rule: status, and the tasks made when done."""
        return import_jobs.get(db_session(), job_id, "task_rule")


class LeadReport(Schema):
    lon = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    crs = SafeString(
        load_default="wgs84", validate=validate.OneOf(["wgs84", "cgcs2000", "gcj02", "bd09"])
    )
    description = SafeString(required=True, validate=validate.Length(1, 1000))


@leads_blp.route("")
class Leads(MethodView):
    @requires("admin", *DISPATCHERS)
    @leads_blp.arguments(LeadReport)
    @leads_blp.response(201)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Record a lead of unlicensed operation (e.g. a citizen's report): placed in its cell
        and given to its worker, or linked to an open lead within 30 m."""
        session = db_session()
        lead = leads.report_lead(
            session,
            current_principal().user_id,
            lon=body["lon"],
            lat=body["lat"],
            crs=body["crs"],
            description=body["description"],
        )
        session.commit()
        return lead
