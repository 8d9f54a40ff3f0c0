"""The city's grid: city outline → town (镇街) → community (村(社区)) → grid cell (基础网格).

Current boundaries live in one table per level, keyed by code; every boundary that was ever in
force is kept in `grid_boundary_version` (valid_from / valid_to), so an assignment made in the past
can be explained against the boundary of its day.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import SRID, Base, created_at_column

MULTIPOLYGON = Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False)


class _Boundary:
    name: Mapped[str] = mapped_column(Text, nullable=False)
    geom: Mapped[Any] = mapped_column(MULTIPOLYGON, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    valid_from: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class City(_Boundary, Base):
    """The city outline: the parent that towns must tile."""

    __tablename__ = "city"
    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{6}$'", name="code_format"),
        CheckConstraint("ST_IsValid(geom)", name="geom_valid"),
        Index("ix_city_geom", "geom", postgresql_using="gist"),
    )


class Town(_Boundary, Base):
    __tablename__ = "town"
    code: Mapped[str] = mapped_column(String(9), primary_key=True)
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{9}$'", name="code_format"),
        CheckConstraint("ST_IsValid(geom)", name="geom_valid"),
        Index("ix_town_geom", "geom", postgresql_using="gist"),
    )


class Community(_Boundary, Base):
    __tablename__ = "community"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    town_code: Mapped[str] = mapped_column(ForeignKey("town.code"), nullable=False, index=True)
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{12}$'", name="code_format"),
        CheckConstraint("ST_IsValid(geom)", name="geom_valid"),
        Index("ix_community_geom", "geom", postgresql_using="gist"),
    )


class GridCell(_Boundary, Base):
    __tablename__ = "grid_cell"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    # what entity_placement refers to a cell by (stable: cells are upserted, never deleted)
    id: Mapped[int] = mapped_column(Integer, Identity(), nullable=False, unique=True)
    community_code: Mapped[str] = mapped_column(
        ForeignKey("community.code"), nullable=False, index=True
    )
    # Denormalised for scoping and for sharding by town (DESIGN.md §7).
    town_code: Mapped[str] = mapped_column(ForeignKey("town.code"), nullable=False, index=True)
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9A-Za-z_-]{1,32}$'", name="code_format"),
        CheckConstraint("ST_IsValid(geom)", name="geom_valid"),
        Index("ix_grid_cell_geom", "geom", postgresql_using="gist"),
    )


class GridBoundaryVersion(Base):
    """Every boundary ever in force at each level; the current one has valid_to IS NULL."""

    __tablename__ = "grid_boundary_version"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    level: Mapped[str] = mapped_column(String(16), nullable=False)
    code: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    parent_code: Mapped[str | None] = mapped_column(String(32))
    geom: Mapped[Any] = mapped_column(MULTIPOLYGON, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("grid_import.id"))
    __table_args__ = (
        CheckConstraint("level IN ('city','town','community','cell')", name="level"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="period"),
        CheckConstraint("ST_IsValid(geom)", name="geom_valid"),
        Index("ix_grid_boundary_version_level_code", "level", "code", "valid_from"),
        Index(
            "uq_grid_boundary_version_current",
            "level",
            "code",
            unique=True,
            postgresql_where="valid_to IS NULL",
        ),
        Index("ix_grid_boundary_version_geom", "geom", postgresql_using="gist"),
    )


class GridImport(Base):
    """One import run (applied, rejected or dry run) with its full report."""

    __tablename__ = "grid_import"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    level: Mapped[str] = mapped_column(String(16), nullable=False)
    source_name: Mapped[str] = mapped_column(Text, nullable=False)
    source_crs: Mapped[str] = mapped_column(String(16), nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    report: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("status IN ('applied','rejected','dry_run')", name="status"),
        CheckConstraint("level IN ('city','town','community','cell')", name="level"),
    )
