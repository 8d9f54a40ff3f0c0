"""The standard address library (标准地址) and the geocoder's answer on each entity.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES = "'address_match', 'registry_coordinates', 'worker_verified', 'manual'"


def upgrade() -> None:
    op.create_geospatial_table(
        "standard_address",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True),
        sa.Column("full_text", sa.Text(), nullable=False),
        sa.Column("normalized", sa.Text(), nullable=False),
        sa.Column("match_key", sa.Text(), nullable=False),
        sa.Column("town", sa.Text(), nullable=True),
        sa.Column("community", sa.Text(), nullable=True),
        sa.Column("road", sa.Text(), nullable=True),
        sa.Column("house_number", sa.Text(), nullable=True),
        sa.Column("building", sa.Text(), nullable=True),
        sa.Column(
            "geom",
            Geometry(geometry_type="POINT", srid=4490, spatial_index=False),
            nullable=False,
        ),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_standard_address")),
        sa.UniqueConstraint("normalized", name=op.f("uq_standard_address_normalized")),
    )
    op.create_geospatial_index(
        "ix_standard_address_geom", "standard_address", ["geom"], postgresql_using="gist"
    )
    op.create_index("ix_standard_address_plate", "standard_address", ["road", "house_number"])
    op.create_index("ix_standard_address_number_town", "standard_address", ["house_number", "town"])
    op.create_index(
        "ix_standard_address_key_trgm",
        "standard_address",
        [sa.text("match_key gin_trgm_ops")],
        postgresql_using="gin",
    )

    op.add_column("market_entity", sa.Column("address_match_id", sa.BigInteger(), nullable=True))
    op.add_column("market_entity", sa.Column("address_match_score", sa.Float(), nullable=True))
    op.add_column("market_entity", sa.Column("location_disagreement_m", sa.Float(), nullable=True))
    op.drop_constraint(op.f("ck_market_entity_location_source"), "market_entity", type_="check")
    op.create_check_constraint(
        op.f("ck_market_entity_location_source"),
        "market_entity",
        "(geom IS NULL) = (location_source IS NULL OR location_source = 'unmatched') AND "
        f"(location_source IS NULL OR location_source IN ({_SOURCES}, 'unmatched'))",
    )
    # the dispatchers' list of addresses to check on site
    op.create_index(
        "ix_market_entity_unmatched",
        "market_entity",
        ["id"],
        postgresql_where=sa.text("location_source = 'unmatched'"),
    )

    op.add_column(
        "entity_import_job",
        sa.Column("kind", sa.String(length=24), server_default="registry", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_entity_import_job_kind"),
        "entity_import_job",
        "kind IN ('registry', 'standard_addresses')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_entity_import_job_kind"), "entity_import_job", type_="check")
    op.drop_column("entity_import_job", "kind")
    op.drop_index("ix_market_entity_unmatched", table_name="market_entity")
    op.execute(
        "UPDATE market_entity SET location_source = NULL WHERE location_source = 'unmatched'"
    )
    op.drop_constraint(op.f("ck_market_entity_location_source"), "market_entity", type_="check")
    op.create_check_constraint(
        op.f("ck_market_entity_location_source"),
        "market_entity",
        "(geom IS NULL) = (location_source IS NULL) AND "
        f"(location_source IS NULL OR location_source IN ({_SOURCES}))",
    )
    for column in ("location_disagreement_m", "address_match_score", "address_match_id"):
        op.drop_column("market_entity", column)
    op.drop_index("ix_standard_address_key_trgm", table_name="standard_address")
    op.drop_index("ix_standard_address_number_town", table_name="standard_address")
    op.drop_index("ix_standard_address_plate", table_name="standard_address")
    op.drop_geospatial_index(
        "ix_standard_address_geom", table_name="standard_address", column_name="geom"
    )
    op.drop_geospatial_table("standard_address")
