"""Market entities (the registry record) and their placement in grid cells (a narrow table).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:44:36.316832

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_geospatial_table(
        "market_entity",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("uscc", sa.String(length=18), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default="存续", nullable=False),
        sa.Column("legal_representative", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("registered_address", sa.Text(), nullable=False),
        sa.Column("business_address", sa.Text(), nullable=True),
        sa.Column("industry_code", sa.String(length=4), nullable=True),
        sa.Column("business_scope", sa.Text(), nullable=True),
        sa.Column("established_on", sa.Date(), nullable=True),
        sa.Column("last_changed_on", sa.Date(), nullable=True),
        sa.Column(
            "licences", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
        sa.Column(
            "annual_report_years",
            postgresql.ARRAY(sa.Integer()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("credit_class", sa.String(length=1), nullable=True),
        sa.Column("abnormal_reason", sa.Text(), nullable=True),
        sa.Column("abnormal_listed_on", sa.Date(), nullable=True),
        sa.Column("abnormal_removed_on", sa.Date(), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=True,
        ),
        sa.Column("location_source", sa.Text(), nullable=True),
        sa.Column("location_accuracy_m", sa.Float(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(geom IS NULL) = (location_source IS NULL) AND (location_source IS NULL OR "
            "location_source IN ('address_match', 'registry_coordinates', 'worker_verified', "
            "'manual'))",
            name=op.f("ck_market_entity_location_source"),
        ),
        sa.CheckConstraint(
            "credit_class IS NULL OR credit_class IN ('A', 'B', 'C', 'D')",
            name=op.f("ck_market_entity_credit_class"),
        ),
        sa.CheckConstraint(
            "industry_code IS NULL OR industry_code ~ '^[0-9]{4}$'",
            name=op.f("ck_market_entity_industry_code"),
        ),
        sa.CheckConstraint(
            "kind IS NULL OR kind IN ('企业', '个体工商户', '农民专业合作社')",
            name=op.f("ck_market_entity_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('存续', '在业', '迁出', '注销', '吊销')",
            name=op.f("ck_market_entity_status"),
        ),
        sa.CheckConstraint(
            "uscc ~ '^[0-9A-HJ-NP-RTUWXY]{18}$'", name=op.f("ck_market_entity_uscc_format")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_entity")),
        sa.UniqueConstraint("uscc", name=op.f("uq_market_entity_uscc")),
    )
    op.create_index(
        "ix_market_entity_address_trgm",
        "market_entity",
        ["registered_address"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"registered_address": "gin_trgm_ops"},
    )
    op.create_geospatial_index(
        "ix_market_entity_geom",
        "market_entity",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index("ix_market_entity_industry", "market_entity", ["industry_code"], unique=False)
    op.create_index(
        "ix_market_entity_name_trgm",
        "market_entity",
        ["name"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )
    op.create_table(
        "entity_placement",
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("cell_code", sa.String(length=32), nullable=True),
        sa.Column("town_code", sa.String(length=9), nullable=True),
        sa.Column(
            "placed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("entity_id", name=op.f("pk_entity_placement")),
    )
    op.create_index("ix_entity_placement_cell", "entity_placement", ["cell_code"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_entity_placement_cell", table_name="entity_placement")
    op.drop_table("entity_placement")
    op.drop_index(
        "ix_market_entity_name_trgm",
        table_name="market_entity",
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )
    op.drop_index("ix_market_entity_industry", table_name="market_entity")
    op.drop_geospatial_index(
        "ix_market_entity_geom",
        table_name="market_entity",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_index(
        "ix_market_entity_address_trgm",
        table_name="market_entity",
        postgresql_using="gin",
        postgresql_ops={"registered_address": "gin_trgm_ops"},
    )
    op.drop_geospatial_table("market_entity")
