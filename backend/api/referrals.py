"""Referrals to departments, the routing rules that choose them, and the dispatch center's
queue (departments: backend/api/departments.py)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate, validates_schema
from marshmallow.exceptions import ValidationError

from backend.api.blueprint import Blueprint
from backend.api.bulk import each_on_its_own
from backend.api.fields import SafeString
from backend.api.security import DISPATCHERS, current_principal, requires
from backend.api.users import if_match_version
from backend.services import dispatch, referrals, routing_rules
from backend.services.versioning import require_version
from backend.web import db_session

blp = Blueprint(
    "referrals", __name__, url_prefix="/api/v1/referrals", description="Referrals (移送)"
)
routing_blp = Blueprint(
    "routing", __name__, url_prefix="/api/v1/routing", description="Routing rules (谁审批谁监管)"
)
dispatch_blp = Blueprint(
    "dispatch", __name__, url_prefix="/api/v1/dispatch", description="The dispatch center"
)
READERS = ("admin", "auditor", "department_officer", *DISPATCHERS)
OFFICERS = ("admin", "department_officer")
DISPATCH = ("admin", *DISPATCHERS)
CODE = validate.Regexp(r"^[A-Z][A-Z0-9_]{1,31}$")
TOWN = validate.Regexp(r"^[0-9]{9}$")


class ReferralQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    status = SafeString(validate=validate.OneOf(referrals.STATUSES))
    overdue = fields.Boolean()
    town_code = SafeString(validate=TOWN)
    finding_type = SafeString(validate=validate.Length(1, 40))
    department_code = SafeString(validate=CODE)


class ReferralSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    department_code = fields.String()
    department_name = fields.String()
    town_code = fields.String(allow_none=True, metadata={"description": "the branch's town"})
    rule_id = fields.Integer(allow_none=True)
    due_on = fields.Date()
    due_approximate = fields.Boolean()
    overdue = fields.Boolean()
    result = fields.String(allow_none=True)
    case_number = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    status_reason = fields.String(allow_none=True)
    reinspection_task_id = fields.Integer(allow_none=True)
    escalation = fields.String(allow_none=True, metadata={"description": "yellow | red"})
    finding = fields.Dict()
    evidence = fields.Dict(metadata={"description": "the submission: outcome, photos, point"})
    entity = fields.Dict(allow_none=True)
    lead = fields.Dict(allow_none=True)
    version = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    concluded_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)


class ReferralState(Schema):
    id = fields.Integer()
    status = fields.String()
    version = fields.Integer()
    department_code = fields.String()


class ReferralReason(Schema):
    reason = SafeString(required=True, validate=validate.Length(1, 500))


class ConcludeBody(Schema):
    result = SafeString(required=True, validate=validate.OneOf(referrals.RESULTS))
    case_number = SafeString(validate=validate.Length(1, 64))
    note = SafeString(validate=validate.Length(1, 2000))


class RerouteBody(ReferralReason):
    department_code = SafeString(required=True, validate=CODE)
    town_code = SafeString(validate=TOWN)


def _page(pagination_parameters: Any, rows_total: tuple[list[Any], int]) -> list[Any]:
    rows, total = rows_total
    pagination_parameters.item_count = total
    return rows


@blp.route("")
class Referrals(MethodView):
    @requires(*READERS)
    @blp.arguments(ReferralQuery, location="query")
    @blp.response(200, ReferralSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[Any]:
        """An officer's inbox (its department; its branch's town when it has one), or the
        referrals of a dispatcher's territory; by due date."""
        return _page(
            pagination_parameters,
            referrals.list_referrals(
                db_session(),
                current_principal(),
                offset=pagination_parameters.first_item,
                limit=pagination_parameters.page_size,
                **args,
            ),
        )


class StatsQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    since = fields.Date(required=True, data_key="from")
    until = fields.Date(required=True, data_key="to")
    by = SafeString(
        load_default="department_town",
        validate=validate.OneOf(["department", "town", "department_town"]),
    )

    @validates_schema
    def _period(self, data: dict[str, Any], **_: Any) -> None:
        if data["until"] < data["since"]:
            raise ValidationError("`to` is before `from`", "to")


def _figure(description: str, number: type[fields.Field] = fields.Integer) -> fields.Field:
    return number(allow_none=True, metadata={"description": description})


class StatsRowSchema(Schema):
    department_code = fields.String(metadata={"description": "when `by` has department"})
    town_code = fields.String(allow_none=True, metadata={"description": "when `by` has town"})
    received = _figure("referrals received in the period")
    with_feedback = _figure("of those, concluded (the department's feedback is in)")
    feedback_rate = _figure("线索处理反馈率 = with_feedback / received", fields.Float)
    cases_opened = _figure("referrals concluded with a case opened (立案), any finding type")
    unlicensed_referrals = _figure(
        "referrals of 无照/无证 operation: findings unlicensed_operation or permit_missing"
    )
    unlicensed_cases_opened = _figure("of those, concluded with a case opened")
    case_conversion_rate = _figure(
        "线索案件转化率 = unlicensed_cases_opened / unlicensed_referrals; null when none",
        fields.Float,
    )
    permit_referrals = _figure("referrals of permit_missing findings")
    permits_issued = _figure("of those, concluded with permit_issued")
    permit_issue_rate = _figure(
        "许可审批发证率 = permits_issued / permit_referrals; null when none", fields.Float
    )
    median_days_to_feedback = _figure("median days from referral to conclusion", fields.Float)
    overdue = _figure("not concluded and past due (business dates in Asia/Shanghai)")


class StatsSchema(Schema):
    since = fields.Date(data_key="from")
    until = fields.Date(data_key="to")
    by = fields.String()
    rows = fields.List(fields.Nested(StatsRowSchema))


@blp.route("/stats")
class Stats(MethodView):
    @requires(*READERS)
    @blp.arguments(StatsQuery, location="query")
    @blp.response(200, StatsSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Figures per department and town for referrals received `from`–`to` (within your
        scope): the 三率 of 74號 item 11 with their counts. 线索处理反馈率 is over every
        referral; 线索案件转化率 only over referrals of 无照/无证 operation (unlicensed_operation,
        permit_missing); 许可审批发证率 over permit_missing. Formulas: docs/figures.md."""
        rows = referrals.stats(
            db_session(),
            current_principal(),
            since=args["since"],
            until=args["until"],
            by=args["by"],
        )
        return {"since": args["since"], "until": args["until"], "by": args["by"], "rows": rows}


@blp.route("/<int:referral_id>")
class Referral(MethodView):
    @requires(*READERS)
    @blp.response(200, ReferralSchema)
    def get(self, referral_id: int) -> Any:
        """One referral with its evidence (finding, submission, photos, entity, location).
        An officer opening a pending referral acknowledges its receipt (→ delivered)."""
        session = db_session()
        row = referrals.get_referral(session, referral_id, current_principal())
        session.commit()
        return row, 200, {"ETag": f'"{row["version"]}"'}


def _act(referral_id: int, action: str, required_version: bool = False, **kw: Any) -> Any:
    session = db_session()
    version = if_match_version()
    if required_version:
        version = require_version(version, "referral")
    row = referrals.act(
        session, referral_id, action, current_principal(), expected_version=version, **kw
    )
    session.commit()
    return row


@blp.route("/<int:referral_id>/accept")
class Accept(MethodView):
    @requires(*OFFICERS)
    @blp.response(200, ReferralState)
    def post(self, referral_id: int) -> Any:
        """Accept responsibility (签收)."""
        return _act(referral_id, "accept")


@blp.route("/<int:referral_id>/return")
class Return(MethodView):
    @requires(*OFFICERS)
    @blp.arguments(ReferralReason)
    @blp.response(200, ReferralState)
    def post(self, body: dict[str, Any], referral_id: int) -> Any:
        """Not ours: back to the dispatchers for re-routing, with a reason (the rule's miss
        is counted)."""
        return _act(referral_id, "return", reason=body["reason"])


@blp.route("/<int:referral_id>/start")
class Start(MethodView):
    @requires(*OFFICERS)
    @blp.response(200, ReferralState)
    def post(self, referral_id: int) -> Any:
        """Work on it (办理中)."""
        return _act(referral_id, "start")


@blp.route("/<int:referral_id>/conclude")
class Conclude(MethodView):
    @requires(*OFFICERS)
    @blp.arguments(ConcludeBody)
    @blp.response(200, ReferralState)
    def post(self, body: dict[str, Any], referral_id: int) -> Any:
        """The department's answer: `case_opened` (with the case number), `permit_issued`,
        `rectified` (these two send a re-inspection to the cell's worker; the referral closes
        when it confirms), `no_violation`, `listed_abnormal` (written to the entity),
        `closed_down`, `other`."""
        return _act(
            referral_id,
            "conclude",
            result=body["result"],
            case_number=body.get("case_number"),
            note=body.get("note"),
        )


@blp.route("/<int:referral_id>/reroute")
class Reroute(MethodView):
    @requires(*DISPATCH)
    @blp.arguments(RerouteBody)
    @blp.response(200, ReferralState)
    def post(self, body: dict[str, Any], referral_id: int) -> Any:
        """Send a returned referral to another department (and branch), with a reason and
        `If-Match`."""
        return _act(
            referral_id,
            "reroute",
            required_version=True,
            reason=body["reason"],
            department_code=body["department_code"],
            town_code=body.get("town_code"),
        )


class ReferralRef(Schema):
    id = fields.Integer(required=True, validate=validate.Range(1, 2**62))
    version = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1))


class BulkRerouteBody(RerouteBody):
    referrals = fields.List(
        fields.Nested(ReferralRef), required=True, validate=validate.Length(1, 1000)
    )


@blp.route("/reroute")
class BulkReroute(MethodView):
    @requires(*DISPATCH)
    @blp.arguments(BulkRerouteBody)
    @blp.response(200)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Re-route many returned referrals, each with the version you saw; each succeeds or
        fails on its own (404, 409, 412) and the answer says which."""
        session = db_session()
        results = each_on_its_own(
            session,
            body["referrals"],
            lambda ref: referrals.act(
                session,
                ref["id"],
                "reroute",
                current_principal(),
                expected_version=ref["version"],
                reason=body["reason"],
                department_code=body["department_code"],
                town_code=body.get("town_code"),
            ),
        )
        session.commit()
        return {"results": results}


@blp.route("/<int:referral_id>/close")
class Close(MethodView):
    @requires(*DISPATCH)
    @blp.arguments(ReferralReason)
    @blp.response(200, ReferralState)
    def post(self, body: dict[str, Any], referral_id: int) -> Any:
        """Close a concluded referral without waiting for the re-inspection (an override:
        reason and `If-Match` required)."""
        return _act(referral_id, "close", required_version=True, reason=body["reason"])


class ExplainBody(Schema):
    finding_id = fields.Integer(validate=validate.Range(1, 2**62))
    finding_type = SafeString(validate=validate.Length(1, 40))
    permit_type = SafeString(
        validate=validate.Length(1, 60),
        metadata={"description": "a permit type code (a name or alias is taken as its code)"},
    )
    industry_code = SafeString(validate=validate.Regexp(r"^[0-9]{4}$"))
    town_code = SafeString(validate=TOWN)

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if ("finding_id" in data) == ("finding_type" in data):
            raise ValidationError("give a finding_id, or a finding_type (hypothetical)")


@routing_blp.route("/explain")
class Explain(MethodView):
    @requires(*READERS)
    @routing_blp.arguments(ExplainBody)
    @routing_blp.response(200)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Which rule a finding (or a hypothetical one) matches, why, and which branch would
        receive it."""
        return routing_rules.explain(db_session(), current_principal(), body)


class RuleSchema(Schema):
    id = fields.Integer(dump_only=True)
    finding_type = SafeString(required=True, validate=validate.Length(1, 40))
    permit_type = SafeString(
        allow_none=True,
        validate=validate.Length(1, 60),
        metadata={"description": "a permit type code (GET /api/v1/permit-types)"},
    )
    industry_prefix = SafeString(allow_none=True, validate=validate.Regexp(r"^[0-9]{1,4}$"))
    department_code = SafeString(required=True, validate=CODE)
    time_limit_days = fields.Integer(required=True, validate=validate.Range(1, 365))
    priority = fields.Integer(load_default=0, validate=validate.Range(-1000, 1000))
    active = fields.Boolean(load_default=True)
    note = SafeString(allow_none=True, validate=validate.Length(max=500))
    legal_basis = SafeString(
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "the law that makes the finding this department's"},
    )
    misses = fields.Integer(dump_only=True, metadata={"description": "referrals returned"})
    version = fields.Integer(dump_only=True)


class RulePatch(Schema):
    department_code = SafeString(validate=CODE)
    time_limit_days = fields.Integer(validate=validate.Range(1, 365))
    priority = fields.Integer(validate=validate.Range(-1000, 1000))
    active = fields.Boolean()
    note = SafeString(allow_none=True, validate=validate.Length(max=500))
    legal_basis = SafeString(allow_none=True, validate=validate.Length(max=500))


@routing_blp.route("/rules")
class Rules(MethodView):
    @requires(*READERS)
    @routing_blp.response(200, RuleSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Every rule, most specific first, with how often each missed (referrals returned)."""
        return routing_rules.list_rules(db_session())

    @requires("admin")
    @routing_blp.arguments(RuleSchema)
    @routing_blp.response(201, RuleSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Add a rule (audited)."""
        session = db_session()
        rule = routing_rules.create_rule(session, body)
        session.commit()
        return rule


@routing_blp.route("/rules/<int:rule_id>")
class Rule(MethodView):
    @requires("admin")
    @routing_blp.arguments(RulePatch)
    @routing_blp.response(200, RuleSchema)
    def patch(self, body: dict[str, Any], rule_id: int) -> Any:
        """Change a rule (`If-Match`; audited: the trail is its history)."""
        session = db_session()
        rule = routing_rules.update_rule(
            session, rule_id, require_version(if_match_version(), "rule"), body
        )
        session.commit()
        return rule, 200, {"ETag": f'"{rule["version"]}"'}


@dispatch_blp.route("/queue")
class Queue(MethodView):
    @requires(*DISPATCH)
    @dispatch_blp.response(200)
    def get(self) -> dict[str, Any]:
        """What waits for the dispatch center in your territory: unassigned and declined
        tasks, returned referrals, leads outside every cell, check-ins flagged for review,
        and everything overdue — counts per kind and the first items of each."""
        return dispatch.queue(db_session(), current_principal())
