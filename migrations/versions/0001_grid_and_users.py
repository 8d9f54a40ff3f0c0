"""Grid geography (city, town, community, grid cell, boundary versions, imports) and users.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 23:40:00.199727

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

# Area in m² of a lon/lat polygon *as drawn* (straight edges in lon/lat), using the ellipsoid's
# degree lengths at the centroid's latitude. Geography areas treat edges as geodesics instead,
# which turns a 3 km sliver 0.1 mm wide into a 160 m² "gap"; this measure keeps QA honest and
# agrees with the ellipsoidal area of grid-sized polygons to about 1e-5.
AREA_FUNCTION = """
CREATE OR REPLACE FUNCTION gp_area_m2(g geometry) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(ST_Area(g) * (111132.954 - 559.822 * cos(2 * radians(lat))
                                  + 1.175 * cos(4 * radians(lat)))
                               * (111412.84 * cos(radians(lat)) - 93.5 * cos(3 * radians(lat))
                                  + 0.118 * cos(5 * radians(lat))), 0)
    FROM (SELECT ST_Y(ST_Centroid(g)) AS lat) c
$$
"""

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # IF NOT EXISTS is a no-op for a non-superuser when the template database already has them.
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(AREA_FUNCTION)
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.Text(), server_default="", nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("town_code", sa.String(length=9), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "role IN ('admin','city_dispatcher','town_dispatcher','community_dispatcher',"
            "'grid_worker','department_officer','auditor')",
            name=op.f("ck_app_user_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_geospatial_table(
        "city",
        sa.Column("code", sa.String(length=6), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^[0-9]{6}$'", name=op.f("ck_city_code_format")),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_city_geom_valid")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_city")),
    )
    op.create_geospatial_index(
        "ix_city_geom", "city", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_geospatial_table(
        "town",
        sa.Column("code", sa.String(length=9), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^[0-9]{9}$'", name=op.f("ck_town_code_format")),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_town_geom_valid")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_town")),
    )
    op.create_geospatial_index(
        "ix_town_geom", "town", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_geospatial_table(
        "community",
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("town_code", sa.String(length=9), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^[0-9]{12}$'", name=op.f("ck_community_code_format")),
        sa.ForeignKeyConstraint(
            ["town_code"], ["town.code"], name=op.f("fk_community_town_code_town")
        ),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_community_geom_valid")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_community")),
    )
    op.create_geospatial_index(
        "ix_community_geom",
        "community",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(op.f("ix_community_town_code"), "community", ["town_code"], unique=False)
    op.create_table(
        "grid_import",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.Column("source_crs", sa.String(length=16), nullable=False),
        sa.Column("options", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("report", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "level IN ('city','town','community','cell')", name=op.f("ck_grid_import_level")
        ),
        sa.CheckConstraint(
            "status IN ('applied','rejected','dry_run')", name=op.f("ck_grid_import_status")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["app_user.id"], name=op.f("fk_grid_import_created_by_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_import")),
    )
    op.create_geospatial_table(
        "grid_boundary_version",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("parent_code", sa.String(length=32), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("import_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "level IN ('city','town','community','cell')",
            name=op.f("ck_grid_boundary_version_level"),
        ),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_to > valid_from",
            name=op.f("ck_grid_boundary_version_period"),
        ),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["grid_import.id"],
            name=op.f("fk_grid_boundary_version_import_id_grid_import"),
        ),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_grid_boundary_version_geom_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_boundary_version")),
    )
    op.create_geospatial_index(
        "ix_grid_boundary_version_geom",
        "grid_boundary_version",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_grid_boundary_version_level_code",
        "grid_boundary_version",
        ["level", "code", "valid_from"],
        unique=False,
    )
    op.create_index(
        "uq_grid_boundary_version_current",
        "grid_boundary_version",
        ["level", "code"],
        unique=True,
        postgresql_where="valid_to IS NULL",
    )
    op.create_geospatial_table(
        "grid_cell",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("community_code", sa.String(length=12), nullable=False),
        sa.Column("town_code", sa.String(length=9), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4490,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "valid_from",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("code ~ '^[0-9A-Za-z_-]{1,32}$'", name=op.f("ck_grid_cell_code_format")),
        sa.ForeignKeyConstraint(
            ["community_code"],
            ["community.code"],
            name=op.f("fk_grid_cell_community_code_community"),
        ),
        sa.ForeignKeyConstraint(
            ["town_code"], ["town.code"], name=op.f("fk_grid_cell_town_code_town")
        ),
        sa.CheckConstraint("ST_IsValid(geom)", name=op.f("ck_grid_cell_geom_valid")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_grid_cell")),
    )
    op.create_index(
        op.f("ix_grid_cell_community_code"), "grid_cell", ["community_code"], unique=False
    )
    op.create_geospatial_index(
        "ix_grid_cell_geom",
        "grid_cell",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(op.f("ix_grid_cell_town_code"), "grid_cell", ["town_code"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_grid_cell_town_code"), table_name="grid_cell")
    op.drop_geospatial_index(
        "ix_grid_cell_geom", table_name="grid_cell", postgresql_using="gist", column_name="geom"
    )
    op.drop_index(op.f("ix_grid_cell_community_code"), table_name="grid_cell")
    op.drop_geospatial_table("grid_cell")
    op.drop_index(
        "uq_grid_boundary_version_current",
        table_name="grid_boundary_version",
        postgresql_where="valid_to IS NULL",
    )
    op.drop_index("ix_grid_boundary_version_level_code", table_name="grid_boundary_version")
    op.drop_geospatial_index(
        "ix_grid_boundary_version_geom",
        table_name="grid_boundary_version",
        postgresql_using="gist",
        column_name="geom",
    )
    op.drop_geospatial_table("grid_boundary_version")
    op.drop_table("grid_import")
    op.drop_index(op.f("ix_community_town_code"), table_name="community")
    op.drop_geospatial_index(
        "ix_community_geom", table_name="community", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("community")
    op.drop_geospatial_index(
        "ix_town_geom", table_name="town", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("town")
    op.drop_geospatial_index(
        "ix_city_geom", table_name="city", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("city")
    op.drop_table("app_user")
    op.execute("DROP FUNCTION IF EXISTS gp_area_m2(geometry)")
