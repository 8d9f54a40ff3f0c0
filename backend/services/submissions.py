"""What a grid worker does on site: check in (geofenced), and submit an outcome — idempotent
by the phone's own id, so a submission re-sent after a lost answer is answered, not doubled —
with its findings, written notices and re-inspection tasks, all in one transaction."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.tasks import (
    NOTICE_DAYS,
    ON_SITE,
    Finding,
    derive_findings,
    load_outcome,
    notice_text,
)
from backend.services import audit, clock, permit_types, referrals, routing, tasks
from backend.services.errors import Conflict, InvalidInput, NotFound, ServiceError
from backend.services.prepared import execute_prepared
from backend.services.scope import Scope
from geo import crs as geocrs

GEOFENCE_M = 150.0
MAX_ACCURACY_CREDIT_M = 200.0  # a phone claiming ±5 km does not widen the fence to 5 km


def check_in(
    session: Session,
    task_id: int,
    scope: Scope,
    *,
    lon: float,
    lat: float,
    crs: str,
    accuracy_m: float | None,
    device_time: datetime | None,
    reason: str | None,
    geofence_m: float = GEOFENCE_M,
) -> dict[str, Any]:
    """Check in on site: the distance to the entity (or lead) is recorded; beyond the geofence
    (plus the reported accuracy, credited up to 200 m) it is refused with the distance, unless
    the worker gives a reason, which flags the check-in for review."""
    x, y = to_cgcs2000_point(lon, lat, crs)
    distance = session.scalar(
        text(
            "SELECT ST_Distance(COALESCE(e.geom, l.geom)::geography, "
            "ST_SetSRID(ST_MakePoint(:x, :y), 4490)::geography) FROM patrol_task t "
            "LEFT JOIN market_entity e ON e.id = t.entity_id "
            "LEFT JOIN lead l ON l.id = t.lead_id WHERE t.id = :id AND t.assignee_id = :w"
        ),
        {"x": x, "y": y, "id": task_id, "w": scope.user_id},
    )
    fence = geofence_m + min(accuracy_m or 0.0, MAX_ACCURACY_CREDIT_M)
    flag = None
    if distance is not None and distance > fence:
        if not (reason and reason.strip()):
            raise InvalidInput(
                f"You are {distance:.0f} m from the place (allowed: {geofence_m:.0f} m plus "
                f"{fence - geofence_m:.0f} m accuracy). Go closer, or give a reason; a check-in "
                f"with a reason is flagged for review.",
                distance_m=round(distance),
                allowed_m=round(fence),
            )
        flag = reason.strip()[:500]
    return tasks.transition(
        session,
        task_id,
        "check_in",
        scope,
        extra_sql=(
            ", checkin_at = now(), checkin_device_time = :device_time, "
            "checkin_geom = ST_SetSRID(ST_MakePoint(:x, :y), 4490), "
            "checkin_accuracy_m = :accuracy, checkin_distance_m = :distance, checkin_flag = :flag"
        ),
        extra_params={
            "device_time": device_time,
            "x": x,
            "y": y,
            "accuracy": accuracy_m,
            "distance": distance,
            "flag": flag,
        },
        extra_changes={
            "checkin_distance_m": {
                "from": None,
                "to": None if distance is None else round(distance),
            },
            **({"checkin_flag": {"from": None, "to": flag}} if flag else {}),
        },
    ) | {"distance_m": None if distance is None else round(distance), "flagged": bool(flag)}


def to_cgcs2000_point(lon: float, lat: float, crs: str) -> tuple[float, float]:
    """A phone's point in CGCS2000 (4490); a bad CRS or out-of-range point is 422."""
    try:
        return geocrs.to_cgcs2000(geocrs.normalize_crs(crs), lon, lat)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def body_hash(raw: dict[str, Any]) -> str:
    """The identity of a submission's content: canonical JSON of what the phone sent."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# The submission path's statements, built once: the hot ones as text for `execute_prepared`
# (PREPAREd once per connection), the rest as text() (which parses its binds on construction).
_TASK_AND_REPLAY = (
    "SELECT s.worker_id AS replay_worker, s.body_sha256 AS replay_sha, "
    "s.response AS replay_response, t.* FROM (SELECT 1) one "
    "LEFT JOIN submission s ON s.id = :sid "
    "LEFT JOIN LATERAL (SELECT t.id, t.type, t.status, t.entity_id, t.lead_id, "
    "t.finding_id, t.checkin_at, t.cell_code, t.community_code, t.town_code, t.version, "
    "e.name AS entity_name FROM patrol_task t "
    "LEFT JOIN market_entity e ON e.id = t.entity_id "
    "WHERE t.id = :id AND t.assignee_id = :w FOR UPDATE OF t) t ON true"
)
_INSERT_SUBMISSION = text(
    "INSERT INTO submission (id, task_id, worker_id, body_sha256, outcome, geom, "
    "accuracy_m, captured_at, attachment_ids, response) VALUES (:id, :task, :w, :sha, "
    "CAST(:outcome AS jsonb), CASE WHEN CAST(:x AS float8) IS NULL THEN NULL ELSE "
    "ST_SetSRID(ST_MakePoint(:x, :y), 4490) END, :accuracy, :captured, :attachments, "
    "'{}') ON CONFLICT (id) DO NOTHING RETURNING id"
)
# The common submission in one statement: its findings need no written notice nor referral and
# it re-inspects nothing, so the whole answer is known before writing (the task is locked: its
# next version is the one read plus one; the findings' ids are drawn from their sequence first).
# The submission with its answer, the task's move with its audit event (`tasks.transition_ctes`,
# only when the submission was inserted), and the findings.
_SUBMIT_SIMPLE = """
WITH found AS MATERIALIZED (
    SELECT nextval('finding_id_seq') AS id, f.ord, f.type, f.permit_type, f.details
    FROM jsonb_to_recordset(CAST(:sub_findings AS jsonb))
         AS f(ord int, type text, permit_type text, details jsonb)
),
answer AS MATERIALIZED (
    SELECT jsonb_build_object(
        'id', CAST(:sub_id AS text),
        'task', jsonb_build_object('id', CAST(:sub_task AS bigint), 'status', CAST(:target AS text),
                                   'version', CAST(:sub_version AS int)),
        'findings', COALESCE((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
            'id', id, 'type', type, 'permit_type', permit_type)) ORDER BY ord) FROM found),
            CAST('[]' AS jsonb))) AS r
),
ins AS (
    INSERT INTO submission (id, task_id, worker_id, body_sha256, outcome, geom, accuracy_m,
                            captured_at, attachment_ids, response)
    SELECT CAST(:sub_id AS uuid), CAST(:sub_task AS bigint), CAST(:sub_w AS int),
           CAST(:sub_sha AS text), CAST(:sub_outcome AS jsonb),
           CASE WHEN CAST(:sub_x AS float8) IS NULL THEN NULL
                ELSE ST_SetSRID(ST_MakePoint(:sub_x, CAST(:sub_y AS float8)), 4490) END,
           CAST(:sub_accuracy AS float8), CAST(:sub_captured AS timestamptz),
           CAST(:sub_attachments AS bigint[]), a.r FROM answer a
    ON CONFLICT (id) DO NOTHING RETURNING id
),
{moves},
recorded AS (
    INSERT INTO finding (id, type, permit_type, task_id, submission_id, entity_id, lead_id,
                         details)
    SELECT f.id, f.type, f.permit_type, CAST(:sub_task AS bigint), CAST(:sub_id AS uuid),
           CAST(:sub_entity AS bigint), CAST(:sub_lead AS bigint), f.details
    FROM found f WHERE EXISTS (SELECT 1 FROM moved)
)
SELECT EXISTS (SELECT 1 FROM ins) AS inserted, (SELECT version FROM moved) AS version,
       (SELECT r FROM answer) AS answer
"""
_STORE_ANSWER = text("UPDATE submission SET response = CAST(:r AS jsonb) WHERE id = :id")
_INSERT_FINDING = text(
    "INSERT INTO finding (type, permit_type, task_id, submission_id, entity_id, "
    "lead_id, details) VALUES (:type, :permit, :task, :sub, :entity, :lead, "
    "CAST(:details AS jsonb)) RETURNING id"
)


def submit(
    session: Session, scope: Scope, body: dict[str, Any], raw: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) for one submission. The same id with the same body answers the
    first answer again (200); with another body 409. The task must be in the worker's hands
    (404 otherwise) and, for on-site types, checked in (409)."""
    digest = body_hash(raw)
    # the replay check and the task (locked) in one round trip
    row = (
        execute_prepared(
            session,
            _TASK_AND_REPLAY,
            {"sid": body["id"], "id": body["task_id"], "w": scope.user_id},
        )
        .mappings()
        .one()
    )
    if row["replay_worker"] is not None:
        return 200, _replayed(body["id"], scope, digest, row)
    task = row if row["id"] is not None else None
    if task is None:
        raise NotFound(f"No task {body['task_id']} in your hands.")
    try:
        outcome = load_outcome(task["type"], body["outcome"])
    except ValidationError as exc:
        raise InvalidInput(
            "The outcome does not fit the task type.",
            errors=[{"field": "outcome", "messages": exc.messages.get("outcome", exc.messages)}],
        ) from exc
    if task["type"] == "license_check":  # permit codes; names and aliases become codes
        outcome = permit_types.normalise_outcome(session, outcome)
    if task["type"] in ON_SITE and task["checkin_at"] is None:
        raise Conflict(f"Check in at the place before submitting task {task['id']}.")
    attachments = sorted(set(body.get("attachment_ids") or []))
    if attachments:
        known = set(
            session.scalars(
                text("SELECT id FROM attachment WHERE id = ANY(:ids) AND uploaded_by = :w"),
                {"ids": attachments, "w": scope.user_id},
            )
        )
        unknown = [a for a in attachments if a not in known]
        if unknown:
            raise InvalidInput(f"Unknown attachments: {unknown} (upload them first).")
    point = body.get("point")
    xy = to_cgcs2000_point(point["lon"], point["lat"], point.get("crs", "wgs84")) if point else None
    if xy is None and task["type"] in ON_SITE:
        raise InvalidInput("An on-site submission needs the point where it was made.")
    values = {
        "id": body["id"],
        "task": task["id"],
        "w": scope.user_id,
        "sha": digest,
        "outcome": json.dumps(outcome, default=str, ensure_ascii=False),
        "x": xy[0] if xy else None,
        "y": xy[1] if xy else None,
        "accuracy": point.get("accuracy_m") if point else None,
        "captured": body.get("captured_at"),
        "attachments": attachments,
    }
    findings = derive_findings(task["type"], outcome)
    if task["type"] != "reinspection" and not any(
        f.needs_notice or f.type in routing.REFERRED for f in findings
    ):
        return _submit_simple(session, scope, body, task, values, findings, digest)
    inserted = session.scalar(_INSERT_SUBMISSION, values)
    if inserted is None:  # the same id arrived twice at once: the other one won
        return 200, _raced(session, body["id"], scope, digest)
    moved = tasks.transition(session, task["id"], "submit", scope, **_submit_move(body))
    recorded = _record_findings(session, task, body["id"], findings, outcome)
    answer = {
        "id": str(body["id"]),
        "task": {"id": task["id"], "status": moved["status"], "version": moved["version"]},
        "findings": recorded,
    }
    session.execute(
        _STORE_ANSWER,
        {"r": json.dumps(answer, default=str, ensure_ascii=False), "id": body["id"]},
    )
    return 201, answer


def _submit_move(body: dict[str, Any]) -> dict[str, Any]:
    """The task's move on a submission: its time, and the submission's id in the audit event."""
    return {
        "extra_sql": ", submitted_at = now()",
        "extra_changes": {"submission_id": {"from": None, "to": str(body["id"])}},
    }


def _submit_simple(
    session: Session,
    scope: Scope,
    body: dict[str, Any],
    task: Any,
    values: dict[str, Any],
    findings: list[Finding],
    digest: str,
) -> tuple[int, dict[str, Any]]:
    """`submit` in one statement (`_SUBMIT_SIMPLE`)."""
    moves, params = tasks.transition_ctes(
        session,
        task["id"],
        "submit",
        scope,
        **_submit_move(body),
        guard="EXISTS (SELECT 1 FROM ins)",
    )
    params.update({f"sub_{key}": value for key, value in values.items()})
    params["sub_version"] = task["version"] + 1
    params["sub_entity"] = task["entity_id"]
    params["sub_lead"] = task["lead_id"]
    params["sub_findings"] = json.dumps(
        [
            {"ord": i, "type": f.type, "permit_type": f.permit_type, "details": f.details}
            for i, f in enumerate(findings)
        ],
        default=str,
        ensure_ascii=False,
    )
    session.flush()
    row = execute_prepared(session, _SUBMIT_SIMPLE.replace("{moves}", moves), params).one()
    if not row.inserted:  # the same id arrived twice at once: the other one won
        return 200, _raced(session, body["id"], scope, digest)
    if row.version is None:
        tasks.refuse_transition(session, task["id"], "submit", scope, None)
    return 201, dict(row.answer)


def _raced(session: Session, sid: Any, scope: Scope, digest: str) -> dict[str, Any]:
    replay = _replay(session, sid, scope, digest)
    if replay is None:
        raise Conflict(f"Submission {sid} is being processed; send it again.")
    return replay


def _replay(session: Session, sid: Any, scope: Scope, digest: str) -> dict[str, Any] | None:
    row = (
        session.execute(
            text(
                "SELECT worker_id AS replay_worker, body_sha256 AS replay_sha, "
                "response AS replay_response FROM submission WHERE id = :id"
            ),
            {"id": sid},
        )
        .mappings()
        .first()
    )
    return None if row is None else _replayed(sid, scope, digest, row)


def _replayed(sid: Any, scope: Scope, digest: str, row: Any) -> dict[str, Any]:
    """The first answer to submission `sid`, for the same worker and the same body."""
    if row["replay_worker"] != scope.user_id or row["replay_sha"] != digest:
        raise Conflict(
            f"Submission {sid} was already received with a different body; a new submission "
            f"needs a new id."
        )
    return dict(row["replay_response"])


def _record_findings(
    session: Session,
    task: Any,
    submission_id: Any,
    findings: list[Finding],
    outcome: dict[str, Any],
) -> list[dict[str, Any]]:
    out = []
    deadline = None
    for finding in findings:
        fid = session.scalar(
            _INSERT_FINDING,
            {
                "type": finding.type,
                "permit": finding.permit_type,
                "task": task["id"],
                "sub": submission_id,
                "entity": task["entity_id"],
                "lead": task["lead_id"],
                "details": json.dumps(finding.details, default=str, ensure_ascii=False),
            },
        )
        item: dict[str, Any] = {"id": fid, "type": finding.type}
        if finding.permit_type:
            item["permit_type"] = finding.permit_type
        if finding.needs_notice:
            deadline = deadline or tasks.due_in(session, NOTICE_DAYS)
            item["notice"] = _notice(session, task, fid, finding, deadline)
        out.append(item)
    if task["type"] == "reinspection" and task["finding_id"]:
        rectified = outcome["rectified"]
        session.execute(
            text("UPDATE finding SET status = :s WHERE id = :id"),
            {"s": "resolved" if rectified else "not_rectified", "id": task["finding_id"]},
        )
        referrals.on_reinspection(session, task["finding_id"], rectified)
    # findings a department must act on are referred in the same transaction (most findings
    # are not: no round trip for them)
    referred = [f["id"] for f in out if f["type"] in routing.REFERRED]
    if not referred:
        return out
    referrals.refer_findings(session, referred)
    by_finding = {
        row.finding_id: row.id
        for row in session.execute(
            text("SELECT id, finding_id FROM referral WHERE finding_id = ANY(:f)"),
            {"f": referred},
        )
    }
    for item in out:
        if item["id"] in by_finding:
            item["referral_id"] = by_finding[item["id"]]
    return out


def _notice(session: Session, task: Any, finding_id: int, finding: Any, deadline: Any) -> dict:
    """The written notice (书面告知书) and the re-inspection task due at its deadline."""
    permit_name = None
    if finding.permit_type:
        permit_name = permit_types.names(session, [finding.permit_type]).get(finding.permit_type)
    body = notice_text(
        finding, task["entity_name"], deadline.due.isoformat(), permit_name=permit_name
    )
    reinspection = session.scalar(
        text(
            "INSERT INTO patrol_task (type, origin, entity_id, lead_id, finding_id, cell_code, "
            "community_code, town_code, due_on, due_approximate) VALUES ('reinspection', "
            "'notice', :entity, :lead, :finding, :cell, :community, :town, :due, :approx) "
            "RETURNING id"
        ),
        {
            "entity": task["entity_id"],
            "lead": task["lead_id"],
            "finding": finding_id,
            "cell": task["cell_code"],
            "community": task["community_code"],
            "town": task["town_code"],
            "due": deadline.due,
            "approx": deadline.approximate,
        },
    )
    audit.record(
        session,
        "create",
        "task",
        reinspection,
        changes={
            "type": {"from": None, "to": "reinspection"},
            "finding_id": {"from": None, "to": finding_id},
        },
    )
    tasks.assign_queued(session, "SELECT CAST(:rid AS bigint)", {"rid": reinspection})
    notice_id = session.scalar(
        text(
            "INSERT INTO written_notice (finding_id, entity_id, issued_on, deadline, "
            "deadline_approximate, reinspection_task_id, text) VALUES (:f, :e, :today, "
            ":d, :approx, :r, :text) RETURNING id"
        ),
        {
            "f": finding_id,
            "e": task["entity_id"],
            "today": clock.today(),
            "d": deadline.due,
            "approx": deadline.approximate,
            "r": reinspection,
            "text": body,
        },
    )
    return {
        "id": notice_id,
        "deadline": deadline.due.isoformat(),
        "deadline_approximate": deadline.approximate,
        "reinspection_task_id": reinspection,
        "text": body,
    }


def sync(
    session: Session, scope: Scope, items: list[tuple[dict[str, Any] | None, dict[str, Any], Any]]
) -> list[dict[str, Any]]:
    """A day's queue from a phone: each (loaded body or None, raw body, load errors) on its own
    savepoint — it succeeds whole or leaves nothing — with a result per item."""
    results = []
    for body, raw, errors in items:
        sid = raw.get("id") if isinstance(raw, dict) else None
        if body is None:
            results.append(
                {"id": sid, "status": 422, "problem": {"title": "Invalid input", "errors": errors}}
            )
            continue
        savepoint = session.begin_nested()
        try:
            status, answer = submit(session, scope, body, raw)
            savepoint.commit()
            results.append({"id": str(body["id"]), "status": status, "result": answer})
        except ServiceError as exc:
            savepoint.rollback()
            problem = {"title": exc.title, "detail": exc.detail}
            if exc.errors:
                problem["errors"] = exc.errors
            results.append({"id": str(body["id"]), "status": exc.status, "problem": problem})
    return results
