"""Patrol tasks: types, states and transitions, the outcome each type's submission must give,
and the findings an outcome yields (東府辦〔2017〕109號: 首检 within 10 working days; a
problem gets a written notice with a deadline and a 复查 within 10 working days)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

TASK_TYPES = (
    "address_check",
    "operation_check",
    "license_check",
    "unlicensed_lead",
    "annual_report_prompt",
    "license_display",
    "reinspection",
)
#: tasks done on site: a check-in (inside the geofence, or with a reason) comes first
ON_SITE = frozenset(TASK_TYPES) - {"annual_report_prompt"}
LIVE = ("open", "assigned", "accepted", "in_progress", "submitted", "declined", "returned")
#: in a worker's hands
HELD = ("assigned", "accepted", "in_progress", "returned")
#: waiting in the dispatcher's queue
QUEUED = ("open", "declined")

FIRST_INSPECTION_DAYS = 10  # 首检
NOTICE_DAYS = 10  # 书面告知书 deadline and 复查


@dataclass(frozen=True)
class Transition:
    """`action` moves a task from one of `sources` to `target`; `by` is who may do it."""

    sources: tuple[str, ...]
    target: str
    by: str  # "worker" (the assignee) | "dispatcher"
    needs_reason: bool = False


TRANSITIONS: dict[str, Transition] = {
    "accept": Transition(("assigned",), "accepted", "worker"),
    "decline": Transition(("assigned", "accepted"), "declined", "worker", needs_reason=True),
    "check_in": Transition(("accepted", "in_progress", "returned"), "in_progress", "worker"),
    "submit": Transition(("accepted", "in_progress", "returned"), "submitted", "worker"),
    # a dispatcher (re)assigns anything not yet submitted
    "assign": Transition(
        ("open", "declined", "assigned", "accepted", "in_progress", "returned"),
        "assigned",
        "dispatcher",
    ),
    "close": Transition(("submitted",), "closed", "dispatcher"),
    "return": Transition(("submitted",), "returned", "dispatcher", needs_reason=True),
    "cancel": Transition(tuple(s for s in LIVE), "cancelled", "dispatcher", needs_reason=True),
}


# --------------------------------------------------------------------------------------------
# Outcomes: what a submission of each task type must say
# --------------------------------------------------------------------------------------------


class _Outcome(Schema):
    class Meta:
        unknown = RAISE

    note = fields.String(validate=validate.Length(max=1000))


class AddressCheckOutcome(_Outcome):
    found_at_address = fields.Boolean(required=True)
    operating = fields.Boolean(metadata={"description": "required when found"})
    sign_matches_name = fields.Boolean()
    actual_address = fields.String(
        validate=validate.Length(1, 200), metadata={"description": "where it is now, if moved"}
    )

    @validates_schema
    def _found_needs_operating(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("found_at_address") and "operating" not in data:
            raise ValidationError("say whether it operates there", "operating")


class OperationCheckOutcome(_Outcome):
    operating = fields.Boolean(required=True)
    matches_business_scope = fields.Boolean()


class LicenseCheckOutcome(_Outcome):
    """Permits by code (GET /api/v1/permit-types); a name or alias is accepted and stored as
    its code, anything else is refused (backend/services/permit_types.py)."""

    permits_needed = fields.List(
        fields.String(validate=validate.Length(1, 50)),
        required=True,
        validate=validate.Length(max=20),
    )
    permits_shown = fields.List(
        fields.String(validate=validate.Length(1, 50)),
        required=True,
        validate=validate.Length(max=20),
    )


class UnlicensedLeadOutcome(_Outcome):
    operating_without_licence = fields.Boolean(required=True)
    name_on_sign = fields.String(validate=validate.Length(1, 100))
    business_type = fields.String(validate=validate.Length(1, 100))
    operator_present = fields.Boolean()


class AnnualReportOutcome(_Outcome):
    notified_how = fields.String(
        required=True, validate=validate.OneOf(["in_person", "phone", "notice_left"])
    )
    promised_on = fields.Date()


class LicenseDisplayOutcome(_Outcome):
    licence_displayed = fields.Boolean(required=True)


class ReinspectionOutcome(_Outcome):
    rectified = fields.Boolean(required=True)


OUTCOME_SCHEMAS: dict[str, type[Schema]] = {
    "address_check": AddressCheckOutcome,
    "operation_check": OperationCheckOutcome,
    "license_check": LicenseCheckOutcome,
    "unlicensed_lead": UnlicensedLeadOutcome,
    "annual_report_prompt": AnnualReportOutcome,
    "license_display": LicenseDisplayOutcome,
    "reinspection": ReinspectionOutcome,
}


# one instance per type: loading does not change a schema, and making one deep-copies its
# fields
_OUTCOME_LOADERS: dict[str, Schema] = {kind: cls() for kind, cls in OUTCOME_SCHEMAS.items()}


def load_outcome(task_type: str, outcome: Any) -> dict[str, Any]:
    """The outcome checked against its type's schema (ValidationError with field messages)."""
    if not isinstance(outcome, dict):
        raise ValidationError({"outcome": ["must be an object"]})
    try:
        return dict(_OUTCOME_LOADERS[task_type].load(outcome))
    except ValidationError as exc:
        raise ValidationError({"outcome": exc.messages}) from exc


# --------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    type: str
    permit_type: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: a written notice with a deadline, and a re-inspection when it runs out
    needs_notice: bool = False


def derive_findings(task_type: str, outcome: dict[str, Any]) -> list[Finding]:
    """What an accepted outcome establishes. Pure: same outcome, same findings."""
    note = {"note": outcome["note"]} if outcome.get("note") else {}
    out: list[Finding] = []
    if task_type == "address_check":
        if not outcome["found_at_address"]:
            moved = outcome.get("actual_address")
            out.append(Finding("address_unreachable", details={**note, "actual_address": moved}))
        elif not outcome["operating"]:
            out.append(Finding("not_operating", details=note))
        elif outcome.get("sign_matches_name") is False:
            out.append(Finding("sign_mismatch", details=note, needs_notice=True))
    elif task_type == "operation_check":
        if not outcome["operating"]:
            out.append(Finding("not_operating", details=note))
        elif outcome.get("matches_business_scope") is False:
            out.append(Finding("beyond_business_scope", details=note))
    elif task_type == "license_check":
        shown = set(outcome["permits_shown"])
        for permit in sorted(set(outcome["permits_needed"]) - shown):
            out.append(Finding("permit_missing", permit, note, needs_notice=True))
    elif task_type == "unlicensed_lead":
        if outcome["operating_without_licence"]:
            details = {**note, **{k: outcome[k] for k in ("name_on_sign", "business_type")
                                  if k in outcome}}  # fmt: skip
            out.append(Finding("unlicensed_operation", details=details, needs_notice=True))
    elif task_type == "annual_report_prompt":
        details = {**note, "notified_how": outcome["notified_how"]}
        if outcome.get("promised_on"):
            details["promised_on"] = outcome["promised_on"].isoformat()
        out.append(Finding("annual_report_notified", details=details))
    elif task_type == "license_display":
        if not outcome["licence_displayed"]:
            out.append(Finding("license_not_displayed", details=note, needs_notice=True))
    elif task_type == "reinspection":
        out.append(Finding("rectified" if outcome["rectified"] else "not_rectified", details=note))
    return out


def notice_text(
    finding: Finding, entity_name: str | None, deadline: str, *, permit_name: str | None = None
) -> str:
    """The body of the written notice (书面告知书) for a finding; a missing permit is named by
    its name (`permit_name`), not its code."""
    what = {
        "permit_missing": f"未取得{permit_name or finding.permit_type}从事经营活动",
        "unlicensed_operation": "未依法取得营业执照从事经营活动",
        "license_not_displayed": "未在经营场所醒目位置悬挂营业执照",
        "sign_mismatch": "经营场所招牌与登记名称不一致",
    }.get(finding.type, finding.type)
    who = entity_name or "经营者"
    return f"{who}：经检查，你（单位）存在{what}的情况。请于{deadline}前整改，逾期将依法处理。"
