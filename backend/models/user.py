"""People who act in gridpatrol, their sessions, and the grid workers' roster of cells."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import Base, created_at_column

ROLES = (
    "admin",
    "city_dispatcher",
    "town_dispatcher",
    "community_dispatcher",
    "grid_worker",
    "department_officer",
    "auditor",
)


class AppUser(Base):
    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    # Territory: a town dispatcher has a town, a community dispatcher a community (and its
    # town), a department officer a department and optionally a town branch (town_code).
    town_code: Mapped[str | None] = mapped_column(ForeignKey("town.code"))
    community_code: Mapped[str | None] = mapped_column(ForeignKey("community.code"))
    department_code: Mapped[str | None] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(32))  # personal data: masked per role
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("role IN (" + ",".join(f"'{r}'" for r in ROLES) + ")", name="role"),
        CheckConstraint("role <> 'town_dispatcher' OR town_code IS NOT NULL", name="town_scope"),
        CheckConstraint(
            "role <> 'community_dispatcher' OR community_code IS NOT NULL", name="community_scope"
        ),
        CheckConstraint(
            "role <> 'department_officer' OR department_code IS NOT NULL", name="department_scope"
        ),
    )


class AuthSession(Base):
    """A login and the family of refresh tokens it rotates through; revoked as a whole."""

    __tablename__ = "auth_session"
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), nullable=False, index=True)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    client_addr: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)


class RefreshToken(Base):
    __tablename__ = "refresh_token"
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()
    )
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_session.id"), nullable=False, index=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, unique=True)
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Failed logins per account ('user:<name>') and per client address ('addr:<ip>')."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False)
    first_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CellWorker(Base):
    """Which grid workers walk which cell: one primary per cell, and each worker is primary in
    at most one cell (their own); any number of backups."""

    __tablename__ = "cell_worker"
    cell_code: Mapped[str] = mapped_column(ForeignKey("grid_cell.code"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), primary_key=True)
    duty: Mapped[str] = mapped_column(String(8), nullable=False)
    assigned_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("duty IN ('primary', 'backup')", name="duty"),
        Index("ix_cell_worker_user_id", "user_id"),
        Index(
            "uq_cell_worker_primary_per_cell",
            "cell_code",
            unique=True,
            postgresql_where="duty = 'primary'",
        ),
        Index(
            "uq_cell_worker_primary_per_worker",
            "user_id",
            unique=True,
            postgresql_where="duty = 'primary'",
        ),
    )
