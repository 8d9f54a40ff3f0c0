"""Market entities: list and read within your territory; dispatchers correct them."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest.fields import Upload
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import Crs, SafeString
from backend.api.jobs import list_jobs, queue_upload
from backend.api.personal import Personal
from backend.api.security import (
    ANY_ROLE,
    DISPATCHERS,
    current_scope,
    requires,
)
from backend.api.users import if_match_version
from backend.domain.registry_rows import HEADERS
from backend.models.entity import LOCATION_SOURCES, REGISTRATION_STATUSES, UNMATCHED
from backend.services import (
    entities,
    entity_import,
    geocoding,
    grid_query,
    import_jobs,
    task_rules,
)
from backend.web import db_session

blp = Blueprint(
    "entities", __name__, url_prefix="/api/v1/entities", description="Market entities (市场主体)"
)


class EntityQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    cell = SafeString(validate=validate.Length(1, 32))
    community = SafeString(validate=validate.Regexp(r"^[0-9]{12}$"))
    town = SafeString(validate=validate.Regexp(r"^[0-9]{9}$"))
    status = SafeString(validate=validate.OneOf(REGISTRATION_STATUSES))
    industry = SafeString(
        validate=validate.Regexp(r"^[0-9]{1,4}$"),
        metadata={"description": "GB/T 4754 code prefix, e.g. 52 or 5211"},
    )
    credit_class = SafeString(validate=validate.OneOf(["A", "B", "C", "D"]))
    abnormal = fields.Boolean(metadata={"description": "listed in 经营异常名录 now"})
    unplaced = fields.Boolean(metadata={"description": "no cell (no point, or outside)"})
    location_source = SafeString(
        validate=validate.OneOf([*LOCATION_SOURCES, UNMATCHED]),
        metadata={"description": "e.g. `unmatched`: addresses the geocoder could not place"},
    )
    location_disagrees = fields.Boolean(
        metadata={"description": "the point is far from the matched standard address"}
    )
    q = SafeString(
        validate=validate.Length(1, 100),
        metadata={"description": "name or address contains, or the exact USCC"},
    )
    bbox = SafeString(metadata={"description": "minLon,minLat,maxLon,maxLat"})


class LocationSchema(Schema):
    lon = fields.Float(allow_none=True)
    lat = fields.Float(allow_none=True)
    source = fields.String(allow_none=True, attribute="location_source")
    accuracy_m = fields.Float(allow_none=True, attribute="location_accuracy_m")


class EntitySummarySchema(Schema):
    id = fields.Integer()
    uscc = fields.String()
    name = fields.String()
    kind = fields.String(allow_none=True)
    status = fields.String()
    legal_representative = Personal("person_name", allow_none=True)
    phone = Personal("phone", allow_none=True)
    registered_address = fields.String()
    business_address = fields.String(allow_none=True)
    industry_code = fields.String(allow_none=True)
    credit_class = fields.String(allow_none=True)
    lon = fields.Float(allow_none=True)
    lat = fields.Float(allow_none=True)
    location_source = fields.String(allow_none=True)
    cell_code = fields.String(allow_none=True)
    community_code = fields.String(allow_none=True)
    town_code = fields.String(allow_none=True)
    unplaced_reason = fields.String(
        allow_none=True,
        metadata={
            "description": "address_unmatched | no_location | outside_grid; null when placed"
        },
    )
    location_disagrees = fields.Boolean(
        metadata={
            "description": "the point is more than "
            f"{geocoding.DISAGREEMENT_M:.0f} m from the matched standard address"
        }
    )
    version = fields.Integer()


class EntitySchema(EntitySummarySchema):
    business_scope = fields.String(allow_none=True)
    established_on = fields.Date(allow_none=True)
    last_changed_on = fields.Date(allow_none=True)
    licences = fields.List(fields.Dict())
    annual_report_years = fields.List(fields.Integer())
    abnormal_reason = fields.String(allow_none=True)
    abnormal_listed_on = fields.Date(allow_none=True)
    abnormal_removed_on = fields.Date(allow_none=True)
    location_accuracy_m = fields.Float(allow_none=True)
    address_match_id = fields.Integer(allow_none=True)
    address_match_score = fields.Float(allow_none=True)
    matched_address = fields.String(allow_none=True, metadata={"description": "标准地址"})
    location_disagreement_m = fields.Float(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    history = fields.List(fields.Dict(), metadata={"description": "audit events, newest first"})
    moves = fields.List(fields.Dict(), metadata={"description": "cell changes this caused"})


class PointInput(Schema):
    lon = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    crs = Crs(load_default="wgs84")
    accuracy_m = fields.Float(validate=validate.Range(0, 10_000), allow_nan=False)


class EntityCorrection(Schema):
    location = fields.Nested(
        PointInput, allow_none=True, metadata={"description": "a verified point; null removes it"}
    )
    business_address = SafeString(allow_none=True, validate=validate.Length(1, 200))
    phone = SafeString(allow_none=True, validate=validate.Regexp(r"^\+?[0-9][0-9 -]{5,30}$"))


class ChangeBatch(Schema):
    changes = fields.List(
        fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True)),
        required=True,
        validate=validate.Length(1, 10_000),
        metadata={
            "description": "registry rows: uscc, name, registered_address, kind, status, "
            "legal_representative, phone, business_address, "
            "industry_code, business_scope, established_on, "
            "last_changed_on, credit_class, lon, lat"
        },
    )
    crs = Crs(load_default="wgs84")


class ChangeReportSchema(Schema):
    rows = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()
    rejected = fields.Integer()
    rejected_rows = fields.List(
        fields.Dict(),
        metadata={"description": "row = position in `changes`, from 1; uscc; reasons"},
    )
    rejected_by_reason = fields.Dict()
    placement = fields.Dict()
    tasks = fields.Dict(metadata={"description": "first inspections made (address_check, ...)"})


class ImportUpload(Schema):
    file = Upload(required=True, metadata={"description": "CSV (UTF-8 or GB18030) or XLSX"})
    encoding = SafeString(validate=validate.Length(1, 32))
    crs = Crs(load_default="wgs84")


class ImportJobSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "registry | standard_addresses | task_rule"})
    status = fields.String(metadata={"description": "queued | running | done | failed"})
    filename = fields.String()
    encoding = fields.String(allow_none=True)
    crs = fields.String()
    rows_read = fields.Integer(metadata={"description": "progress while running"})
    report = fields.Dict(allow_none=True)
    error = fields.String(allow_none=True)
    created_by = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


@blp.route("/imports")
class Imports(MethodView):
    @requires("admin")
    @blp.arguments(ImportUpload, location="form_and_files")
    @blp.response(202, ImportJobSchema)
    def post(self, form: dict[str, Any]) -> Any:
        """Queue a registry file (up to the upload limit; larger files: `gridpatrol entities
        import`). A worker (`gridpatrol worker`) runs it; poll the job for progress and the
        report."""
        return queue_upload(form, "registry")

    @requires("admin")
    @blp.response(200, ImportJobSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, pagination_parameters: Any) -> list[Any]:
        """Import jobs, newest first."""
        return list_jobs(pagination_parameters, "registry")


@blp.route("/imports/<int:job_id>")
class ImportJob(MethodView):
    @requires("admin")
    @blp.response(200, ImportJobSchema)
    def get(self, job_id: int) -> Any:
        """One import job: status, rows read so far, and the report when done."""
        return import_jobs.get(db_session(), job_id)


@blp.route("/changes")
class Changes(MethodView):
    @requires("admin")
    @blp.arguments(ChangeBatch)
    @blp.response(200, ChangeReportSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """The registration system's feed: new registrations and changes, one or many (up to
        10,000 per call). Each is checked on its own, upserted by USCC, audited and placed in
        its cell at once; the answer reports every row."""
        session = db_session()
        rows = (
            (i, {k: v for k, v in change.items() if k in HEADERS})
            for i, change in enumerate(body["changes"], start=1)
        )
        report = entity_import.import_rows(
            session, rows, source_name="change feed", crs=body["crs"]
        )
        answer = report.as_dict()
        if report.created or report.updated:
            # 首检: a new registration or a new address gets its first inspection
            ids = entity_import.touched(session)
            answer["tasks"] = {
                "new_registration": task_rules.first_inspection(
                    session, entity_ids=ids["created"], origin="new_registration"
                ),
                "address_change": task_rules.first_inspection(
                    session, entity_ids=ids["address_changed"], origin="address_change"
                ),
                "permits": task_rules.licence_checks(session, entity_ids=ids["created"]),
            }
        session.commit()
        return answer


@blp.route("")
class Entities(MethodView):
    @requires(ANY_ROLE)
    @blp.arguments(EntityQuery, location="query")
    @blp.response(200, EntitySummarySchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[dict[str, Any]]:
        """Entities in your territory, filtered."""
        if "bbox" in args:
            args["bbox"] = grid_query.parse_bbox(args["bbox"])
        rows, total = entities.list_entities(
            db_session(),
            current_scope(),
            offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
            **args,
        )
        pagination_parameters.item_count = total
        return rows


@blp.route("/<int:entity_id>")
class Entity(MethodView):
    @requires(ANY_ROLE)
    @blp.response(200, EntitySchema)
    def get(self, entity_id: int) -> Any:
        """One entity: the full record, its cell and its history (404 outside your
        territory)."""
        entity = entities.get_entity(db_session(), entity_id, current_scope())
        return entity, 200, {"ETag": f'"{entity["version"]}"'}

    @requires("admin", *DISPATCHERS)
    @blp.arguments(EntityCorrection)
    @blp.response(200, EntitySchema)
    @blp.alt_response(412, description="If-Match is stale")
    @blp.alt_response(428, description="If-Match is missing")
    def patch(self, body: dict[str, Any], entity_id: int) -> Any:
        """Correct the location (re-places it in its cell at once), business address or phone;
        needs `If-Match`."""
        session = db_session()
        entity = entities.correct_entity(
            session, entity_id, if_match_version(), body, current_scope()
        )
        session.commit()
        return entity, 200, {"ETag": f'"{entity["version"]}"'}
