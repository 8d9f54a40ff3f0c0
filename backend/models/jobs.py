"""Background jobs, claimed from PostgreSQL with FOR UPDATE SKIP LOCKED (DESIGN.md §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, created_at_column


class EntityImportJob(Base):
    """A file uploaded through the API (the registry, or the standard address library),
    imported by a worker; the file is kept in the database until the job ends, so any worker
    on any host can run it."""

    __tablename__ = "entity_import_job"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), nullable=False, server_default="registry")
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="queued")
    filename: Mapped[str] = mapped_column(Text, nullable=False)
    encoding: Mapped[str | None] = mapped_column(String(32))
    crs: Mapped[str] = mapped_column(String(16), nullable=False, server_default="wgs84")
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    rows_read: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        CheckConstraint("kind IN ('registry', 'standard_addresses', 'task_rule')", name="kind"),
        Index("ix_entity_import_job_queued", "id", postgresql_where=text("status = 'queued'")),
    )
