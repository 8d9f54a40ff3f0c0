"""Market entities (市场主体) and where they are: the registry record, and its placement in a
grid cell kept in a narrow table of its own, so that assigning 1.5 million entities writes
1.5 million small rows instead of rewriting 1.5 million wide ones."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import SRID, Base, created_at_column

ENTITY_KINDS = ("企业", "个体工商户", "农民专业合作社")
REGISTRATION_STATUSES = ("存续", "在业", "迁出", "注销", "吊销")
LOCATION_SOURCES = ("address_match", "registry_coordinates", "worker_verified", "manual")
#: an address that geocoding could not match: no point, listed for an address check
UNMATCHED = "unmatched"
USCC_PATTERN = "^[0-9A-HJ-NP-RTUWXY]{18}$"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class MarketEntity(Base):
    __tablename__ = "market_entity"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="存续")
    legal_representative: Mapped[str | None] = mapped_column(Text)  # personal data
    phone: Mapped[str | None] = mapped_column(Text)  # personal data
    registered_address: Mapped[str] = mapped_column(Text, nullable=False)  # 住所
    business_address: Mapped[str | None] = mapped_column(Text)  # 经营场所, when different
    industry_code: Mapped[str | None] = mapped_column(String(4))  # GB/T 4754-2017
    business_scope: Mapped[str | None] = mapped_column(Text)
    established_on: Mapped[date | None] = mapped_column(Date)
    last_changed_on: Mapped[date | None] = mapped_column(Date)
    licences: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default="[]"
    )
    annual_report_years: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), nullable=False, server_default="{}"
    )
    credit_class: Mapped[str | None] = mapped_column(String(1))
    abnormal_reason: Mapped[str | None] = mapped_column(Text)
    abnormal_listed_on: Mapped[date | None] = mapped_column(Date)
    abnormal_removed_on: Mapped[date | None] = mapped_column(Date)
    geom: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=SRID, spatial_index=False), nullable=True
    )
    location_source: Mapped[str | None] = mapped_column(Text)
    location_accuracy_m: Mapped[float | None] = mapped_column(Float)
    # the geocoder's answer for the address (kept also when another source gave the point)
    address_match_id: Mapped[int | None] = mapped_column(BigInteger)
    address_match_score: Mapped[float | None] = mapped_column(Float)
    # metres between the point in use and the matched standard address, when both exist
    location_disagreement_m: Mapped[float | None] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint(f"uscc ~ '{USCC_PATTERN}'", name="uscc_format"),
        CheckConstraint(f"kind IS NULL OR {_in('kind', ENTITY_KINDS)}", name="kind"),
        CheckConstraint(_in("status", REGISTRATION_STATUSES), name="status"),
        CheckConstraint(
            "industry_code IS NULL OR industry_code ~ '^[0-9]{4}$'", name="industry_code"
        ),
        CheckConstraint(
            "credit_class IS NULL OR credit_class IN ('A', 'B', 'C', 'D')", name="credit_class"
        ),
        CheckConstraint(
            f"(geom IS NULL) = (location_source IS NULL OR location_source = '{UNMATCHED}') AND "
            f"(location_source IS NULL OR "
            f"{_in('location_source', (*LOCATION_SOURCES, UNMATCHED))})",
            name="location_source",
        ),
        Index("ix_market_entity_geom", "geom", postgresql_using="gist"),
        Index("ix_market_entity_industry", "industry_code"),
        # name and address searched together (migration 0005): one GIN instead of two
        Index(
            "ix_market_entity_search_trgm",
            text("(name || ' ' || registered_address) gin_trgm_ops"),
            postgresql_using="gin",
        ),
    )


class EntityPlacement(Base):
    """The cell an entity's point lies in (`grid_cell.id`; NULL: the point is outside the grid).
    Entities without a point have no row: they are unplaced.

    Derived data, rebuilt by `placement.place_all`, and deliberately without foreign keys:
    their per-row checks tripled the cost of placing 1.5 million entities (measured, see
    benchmarks/). Cells are never deleted (imports upsert them) and entities are never
    deleted (the registry marks them 注销), so nothing can dangle."""

    __tablename__ = "entity_placement"
    entity_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # the cell's integer id, not its code: a narrower row and a cheaper index to rebuild
    # (migration 0014)
    cell_id: Mapped[int | None] = mapped_column(Integer)
    town_code: Mapped[str | None] = mapped_column(String(9))  # the sharding key (DESIGN §7)
    placed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    __table_args__ = (Index("ix_entity_placement_cell", "cell_id"),)


class StandardAddress(Base):
    """The police door-plate library (标准地址): one row per normalised address, with its
    point and the components the geocoder checks exactly (road, house number, building)."""

    __tablename__ = "standard_address"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source_id: Mapped[str | None] = mapped_column(Text)  # the library's own code (地址编码)
    full_text: Mapped[str] = mapped_column(Text, nullable=False)
    normalized: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    match_key: Mapped[str] = mapped_column(Text, nullable=False)  # without town and community
    town: Mapped[str | None] = mapped_column(Text)
    community: Mapped[str | None] = mapped_column(Text)
    road: Mapped[str | None] = mapped_column(Text)
    house_number: Mapped[str | None] = mapped_column(Text)
    building: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=SRID, spatial_index=False), nullable=False
    )
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        Index("ix_standard_address_geom", "geom", postgresql_using="gist"),
        Index("ix_standard_address_plate", "road", "house_number"),
        Index("ix_standard_address_number_town", "house_number", "town"),
        Index(
            "ix_standard_address_key_trgm",
            text("match_key gin_trgm_ops"),
            postgresql_using="gin",
        ),
    )
