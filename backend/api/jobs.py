"""Import jobs through the API, shared by the registry and the address library endpoints."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import func, select

from backend.api.security import current_principal
from backend.models import EntityImportJob
from backend.services import import_jobs
from backend.services.errors import InvalidInput
from backend.web import db_session


def queue_upload(form: dict[str, Any], kind: str) -> Any:
    """Queue the uploaded `file` as a job of `kind`: 202 with its Location."""
    data = form["file"].read()
    if not data:
        raise InvalidInput("The uploaded file is empty.")
    session = db_session()
    job = import_jobs.submit(
        session,
        data,
        form["file"].filename or "upload",
        encoding=form.get("encoding"),
        crs=form["crs"],
        user_id=current_principal().user_id,
        kind=kind,
    )
    session.commit()
    return job, 202, {"Location": f"{request.path}/{job.id}"}


def list_jobs(pagination_parameters: Any, kind: str) -> list[Any]:
    """Jobs of `kind`, newest first, one page."""
    session = db_session()
    mine = EntityImportJob.kind == kind
    pagination_parameters.item_count = session.scalar(
        select(func.count()).select_from(EntityImportJob).where(mine)
    )
    query = select(EntityImportJob).where(mine).order_by(EntityImportJob.id.desc())
    page = query.offset(pagination_parameters.first_item).limit(pagination_parameters.page_size)
    return list(session.scalars(page))
