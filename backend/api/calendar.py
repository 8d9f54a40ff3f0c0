"""The working-day calendar: official holidays and make-up working days (调休) per year,
which years are loaded, and deadlines counted in working days."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest.fields import Upload
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import SafeString
from backend.api.security import ANY_ROLE, requires
from backend.services import calendar
from backend.services.errors import InvalidInput
from backend.web import db_session

MAX_DAYS = 365
blp = Blueprint(
    "calendar",
    __name__,
    url_prefix="/api/v1/calendar",
    description="Working-day calendar: official holidays and make-up working days (调休)",
)


def _day_names(description: str, example: dict[str, str], **kwargs: Any) -> fields.Dict:
    return fields.Dict(
        keys=SafeString(validate=validate.Length(1, 20)),
        values=SafeString(allow_none=True, validate=validate.Length(0, calendar.MAX_NAME)),
        metadata={"description": description, "example": example},
        **kwargs,
    )


class CalendarBody(Schema):
    holidays = _day_names(
        "date (YYYY-MM-DD) → name: the official days off, weekends included; 1 January "
        "(元旦) is always one",
        {"2027-01-01": "元旦"},
        required=True,
    )
    workdays = _day_names(
        "date → name: make-up working days (调休), Saturdays or Sundays only",
        {"2027-02-06": "春节调休"},
        load_default=dict,
    )
    source = SafeString(
        load_default="api",
        validate=validate.Length(1, calendar.MAX_SOURCE),
        metadata={"description": "where the data comes from, e.g. 国办发明电〔2026〕X号"},
    )


class DaySchema(Schema):
    date = fields.Date()
    name = fields.String(allow_none=True)


class YearSchema(Schema):
    year = fields.Integer()
    loaded = fields.Boolean(
        metadata={"description": "false: deadlines in this year count Monday–Friday"}
    )
    source = fields.String(allow_none=True)
    loaded_at = fields.DateTime(allow_none=True)
    holidays = fields.List(fields.Nested(DaySchema))
    workdays = fields.List(fields.Nested(DaySchema), metadata={"description": "调休"})


class LoadSchema(Schema):
    year = fields.Integer()
    source = fields.String()
    replaced = fields.Boolean(metadata={"description": "the year was loaded before"})
    holidays = fields.Integer()
    workdays = fields.Integer()
    added = fields.Integer()
    removed = fields.Integer()
    changed = fields.Integer()


class CalendarUpload(Schema):
    file = Upload(
        required=True,
        metadata={
            "description": "CSV (UTF-8 or GB18030: 日期/date, 类型/kind, 名称/name), XLSX, or "
            'JSON {"year": 2027, "holidays": {...}, "workdays": {...}}'
        },
    )
    source = SafeString(validate=validate.Length(1, calendar.MAX_SOURCE))


class ImportResultSchema(Schema):
    filename = fields.String()
    source = fields.String()
    years = fields.List(fields.Nested(LoadSchema))


class DeadlineQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    start = fields.Date(metadata={"description": "default: today in the business time zone"})
    days = fields.Integer(
        required=True,
        validate=validate.Range(0, MAX_DAYS),
        metadata={"description": "working days after start (start itself not counted)"},
    )


class DeadlineSchema(Schema):
    start = fields.Date()
    days = fields.Integer()
    due = fields.Date()
    approximate = fields.Boolean(
        metadata={"description": "a year without a loaded calendar was counted Monday–Friday"}
    )
    unloaded_years = fields.List(fields.Integer())
    note = fields.String(allow_none=True)


@blp.route("/<int:year>")
class CalendarYear(MethodView):
    @requires(ANY_ROLE)
    @blp.response(200, YearSchema)
    def get(self, year: int) -> dict[str, Any]:
        """One year: whether its calendar is loaded, and its holidays and make-up working
        days."""
        return calendar.year_summary(db_session(), year)

    @requires("admin")
    @blp.arguments(CalendarBody)
    @blp.response(200, YearSchema)
    def put(self, body: dict[str, Any], year: int) -> dict[str, Any]:
        """Replace the year's calendar (every date must lie in the year; make-up working days
        are Saturdays or Sundays; 1 January must be among the holidays)."""
        session = db_session()
        calendar.check_year(year)
        rows = calendar.rows_from_mapping(year, body["holidays"], body["workdays"])
        calendar.load_year_rows(session, year, rows, body["source"])
        session.commit()
        return calendar.year_summary(session, year)


@blp.route("/imports")
class Imports(MethodView):
    @requires("admin")
    @blp.arguments(CalendarUpload, location="form_and_files")
    @blp.response(200, ImportResultSchema)
    def post(self, form: dict[str, Any]) -> dict[str, Any]:
        """Load a calendar file at once (calendars are tiny): every year in it is replaced,
        all or nothing; the answer lists each year loaded."""
        data = form["file"].read()
        if not data:
            raise InvalidInput("The uploaded file is empty.")
        filename = "".join(ch for ch in form["file"].filename or "" if ch.isprintable())
        filename = filename[:100] or "upload"
        session = db_session()
        result = calendar.load_file(
            session, data, filename, form.get("source") or f"upload:{filename}"
        )
        session.commit()
        return result


@blp.route("/deadline")
class DeadlineView(MethodView):
    @requires(ANY_ROLE)
    @blp.arguments(DeadlineQuery, location="query")
    @blp.response(200, DeadlineSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The day `days` working days after `start`; `approximate` (with a note) when a
        year without a loaded calendar was involved."""
        session = db_session()
        result = calendar.explain_deadline(
            session, args.get("start") or calendar.today(), args["days"]
        )
        session.rollback()
        return result
