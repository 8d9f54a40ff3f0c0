"""Seed the working-day calendar from the chinesecalendar package (official holidays and
make-up working days, 2004 to the last year it covers); later years are loaded as data
(`gridpatrol calendar load FILE` or `PUT /api/v1/calendar/{year}`).

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from backend.domain.cn_holidays import package_rows, package_source, package_years

    years = package_years()
    op.bulk_insert(
        sa.table("holiday_calendar", sa.column("day"), sa.column("kind"), sa.column("name")),
        [{"day": r.day, "kind": r.kind, "name": r.name} for r in package_rows()],
    )
    op.bulk_insert(
        sa.table("calendar_year", sa.column("year"), sa.column("source")),
        [{"year": y, "source": package_source()} for y in years],
    )


def downgrade() -> None:
    op.execute("DELETE FROM holiday_calendar")
    op.execute("DELETE FROM calendar_year")
