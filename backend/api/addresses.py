"""The standard address library (标准地址): import it, search it, and ask how an address
would be matched."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.entities import ImportJobSchema, ImportUpload
from backend.api.fields import SafeString
from backend.api.jobs import list_jobs, queue_upload
from backend.api.security import ANY_ROLE, requires
from backend.services import address_query, geocoding, grid_query, import_jobs
from backend.web import db_session

KIND = "standard_addresses"
blp = Blueprint(
    "addresses",
    __name__,
    url_prefix="/api/v1/addresses",
    description="The standard address library (标准地址) and geocoding",
)


class AddressQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    q = SafeString(
        validate=validate.Length(1, 100),
        metadata={"description": "similar to this address (normalised, pg_trgm), best first"},
    )
    town = SafeString(validate=validate.Length(1, 20), metadata={"description": "e.g. 虎门镇"})
    bbox = SafeString(metadata={"description": "minLon,minLat,maxLon,maxLat"})


class AddressSchema(Schema):
    id = fields.Integer()
    source_id = fields.String(allow_none=True)
    full_text = fields.String()
    normalized = fields.String()
    town = fields.String(allow_none=True)
    community = fields.String(allow_none=True)
    road = fields.String(allow_none=True)
    house_number = fields.String(allow_none=True)
    building = fields.String(allow_none=True)
    lon = fields.Float()
    lat = fields.Float()
    similarity = fields.Float(allow_none=True, metadata={"description": "with `q`"})


class MatchRequest(Schema):
    address = SafeString(required=True, validate=validate.Length(1, 200))
    threshold = fields.Float(
        load_default=geocoding.THRESHOLD, validate=validate.Range(0.1, 1.0), allow_nan=False
    )


class MatchSchema(Schema):
    address = fields.String()
    door_plate = fields.String(allow_none=True, metadata={"description": "what is matched"})
    components = fields.Dict()
    threshold = fields.Float()
    matched = fields.Boolean()
    standard_address = fields.Dict(allow_none=True)
    score = fields.Float(allow_none=True)
    note = fields.String(allow_none=True, metadata={"description": "why it did not match"})
    candidates = fields.List(fields.Dict(), metadata={"description": "the nearest texts"})


@blp.route("/imports")
class Imports(MethodView):
    @requires("admin")
    @blp.arguments(ImportUpload, location="form_and_files")
    @blp.response(202, ImportJobSchema)
    def post(self, form: dict[str, Any]) -> Any:
        """Queue a library file: CSV (UTF-8 or GB18030) or XLSX with the columns 标准地址
        (or 地址 / address), 经度 / lon, 纬度 / lat and optionally 地址编码 / source_id. A
        worker upserts it by normalised address, then matches the registry's addresses
        again; the job's report has both."""
        return queue_upload(form, KIND)

    @requires("admin")
    @blp.response(200, ImportJobSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, pagination_parameters: Any) -> list[Any]:
        """Library import jobs, newest first."""
        return list_jobs(pagination_parameters, KIND)


@blp.route("/imports/<int:job_id>")
class ImportJob(MethodView):
    @requires("admin")
    @blp.response(200, ImportJobSchema)
    def get(self, job_id: int) -> Any:
        """One library import job: status, rows read so far, and the report when done."""
        return import_jobs.get(db_session(), job_id, KIND)


@blp.route("")
class Addresses(MethodView):
    @requires(ANY_ROLE)
    @blp.arguments(AddressQuery, location="query")
    @blp.response(200, AddressSchema(many=True))
    @blp.paginate(page_size=20, max_page_size=200)
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[dict[str, Any]]:
        """Search the library (public reference data: every signed-in role may read it)."""
        rows, total = address_query.search(
            db_session(),
            q=args.get("q"),
            town=args.get("town"),
            bbox=grid_query.parse_bbox(args.get("bbox")),
            offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return rows


@blp.route("/match")
class Match(MethodView):
    @requires(ANY_ROLE)
    @blp.arguments(MatchRequest)
    @blp.response(200, MatchSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """How an address would be geocoded: its door plate and components, the match and
        its score (or why there is none), and the nearest library texts. Changes nothing."""
        session = db_session()
        result = geocoding.explain(session, body["address"], threshold=body["threshold"])
        session.rollback()
        return result
