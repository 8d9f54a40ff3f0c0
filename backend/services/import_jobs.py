"""Imports (the registry, the standard address library) as background jobs: any number of
workers, on any host, claim queued jobs with FOR UPDATE SKIP LOCKED; progress is written from
a second connection so it is visible while the import's own transaction is still open."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.models import EntityImportJob
from backend.services import audit, geocoding, task_rules
from backend.services.address_import import import_standard_addresses
from backend.services.entity_import import import_registry
from backend.services.errors import NotFound, ServiceError

log = logging.getLogger(__name__)


def submit(
    session: Session,
    data: bytes,
    filename: str,
    *,
    encoding: str | None,
    crs: str,
    user_id: int | None,
    kind: str = "registry",
) -> EntityImportJob:
    job = EntityImportJob(
        kind=kind,
        filename=filename[:200],
        encoding=encoding,
        crs=crs,
        data=data,
        created_by=user_id,
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        "submit",
        "entity_import_job",
        job.id,
        changes={
            "filename": {"from": None, "to": job.filename},
            "bytes": {"from": None, "to": len(data)},
        },
    )
    return job


def submit_rule(
    session: Session, rule: str, options: dict[str, Any], user_id: int | None
) -> EntityImportJob:
    """Queue a task generation rule (they may make hundreds of thousands of tasks)."""
    data = _json({"rule": rule, **options}).encode()
    return submit(
        session, data, rule, encoding=None, crs="wgs84", user_id=user_id, kind="task_rule"
    )


def get(session: Session, job_id: int, kind: str = "registry") -> EntityImportJob:
    job = session.get(EntityImportJob, job_id)
    if job is None or job.kind != kind:
        raise NotFound(f"No {kind.replace('_', ' ')} import job {job_id}.")
    return job


def run_next(sessions: sessionmaker[Session], engine: Engine) -> int | None:
    """Claim and run one queued job; its id, or None when the queue is empty."""
    with sessions() as claim:
        job_id = claim.scalar(
            text(
                "UPDATE entity_import_job SET status = 'running', started_at = now() "
                "WHERE id = (SELECT id FROM entity_import_job WHERE status = 'queued' "
                "ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id"
            )
        )
        claim.commit()
    if job_id is None:
        return None
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as progress_conn:

        def progress(rows: int) -> None:
            progress_conn.execute(
                text("UPDATE entity_import_job SET rows_read = :n WHERE id = :id"),
                {"n": rows, "id": job_id},
            )

        with sessions() as session:
            job = session.get(EntityImportJob, job_id)
            assert job is not None and job.data is not None
            audit.set_actor(session, audit.Actor(job.created_by, f"import job {job_id}", "system"))
            try:
                report = _run(session, job, progress)
            except Exception as exc:  # the job fails, the worker goes on
                session.rollback()
                _fail(sessions, job_id, exc)
                return job_id
            session.execute(
                text(
                    "UPDATE entity_import_job SET status = 'done', finished_at = now(), "
                    "data = NULL, rows_read = :rows, report = CAST(:report AS jsonb) "
                    "WHERE id = :id"
                ),
                {"rows": report["rows"], "report": _json(report), "id": job_id},
            )
            session.commit()
    return job_id


def _run(session: Session, job: EntityImportJob, progress: Callable[[int], None]) -> dict[str, Any]:
    assert job.data is not None
    if job.kind == "task_rule":
        options = json.loads(job.data)
        rule = options.pop("rule")
        made = task_rules.run_rule(session, rule, **options)
        return {"rows": sum(made.values()), "rule": rule, "made": made}
    args = {"filename": job.filename, "encoding": job.encoding, "crs": job.crs}
    if job.kind == "standard_addresses":
        report = import_standard_addresses(
            session, io.BytesIO(job.data), progress=progress, **args
        ).as_dict()
        # the library changed: match the registry's addresses again
        report["geocoding"] = geocoding.geocode_entities(session)
        return report
    return import_registry(session, io.BytesIO(job.data), progress=progress, **args).as_dict()


def _fail(sessions: sessionmaker[Session], job_id: int, exc: Exception) -> None:
    message = exc.detail if isinstance(exc, ServiceError) else "internal error; see the logs"
    if not isinstance(exc, ServiceError):
        log.exception("entity import job %s failed", job_id)
    with sessions() as session:
        session.execute(
            text(
                "UPDATE entity_import_job SET status = 'failed', finished_at = now(), data = NULL, "
                "error = :e WHERE id = :id"
            ),
            {"e": message, "id": job_id},
        )
        session.commit()


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
