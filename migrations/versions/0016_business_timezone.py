"""Business dates in the business time zone in SQL (issue 13): no function reads CURRENT_DATE.

`gp_near_me` (0012) judged `overdue` by CURRENT_DATE, the date in the database session's time
zone (UTC in Docker): between 00:00 and 08:00 Beijing time the phone showed yesterday's
overdue flags. It now takes today's business date as an argument, `p_today`, which the app
passes from its one clock (backend/services/clock.py, GRIDPATROL_BUSINESS_TZ): SQL and Python
agree, and a frozen clock is honoured. The overdue rule is backend/services/overdue.py's (the
function lists only tasks in hand, none of which is submitted, closed or cancelled).

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "('assigned', 'accepted', 'in_progress', 'returned')"


def _near_me(signature: str, overdue: str, comment: str, check: str = "") -> str:
    """The near-me function of 0012 with `signature`, `overdue` as its flag and `check` run
    first."""
    return f"""
        CREATE FUNCTION gp_near_me({signature})
        RETURNS TABLE (total bigint, page text)
        LANGUAGE plpgsql STABLE AS $$
        DECLARE
            here geography := CASE WHEN p_lon IS NOT NULL AND p_lat IS NOT NULL
                THEN ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4490)::geography END;
        BEGIN{check}
            RETURN QUERY
            WITH mine AS MATERIALIZED (
                SELECT t.id, t.entity_id, t.due_on, COALESCE(e.geom, l.geom) AS geom,
                       round(ST_Distance(COALESCE(e.geom, l.geom)::geography, here))
                           AS distance_m
                FROM patrol_task t
                LEFT JOIN market_entity e ON e.id = t.entity_id
                LEFT JOIN lead l ON l.id = t.lead_id
                WHERE t.assignee_id = p_worker AND t.status IN {LIVE}
            ), chosen AS MATERIALIZED (
                SELECT m.*, row_number() OVER (
                    ORDER BY m.distance_m NULLS LAST, m.due_on, m.id) AS ord
                FROM mine m
                ORDER BY m.distance_m NULLS LAST, m.due_on, m.id
                OFFSET p_offset LIMIT p_limit
            )
            SELECT (SELECT count(*) FROM mine),
                   COALESCE((
                       SELECT json_agg(row_to_json(r) ORDER BY c.ord)
                       FROM chosen c
                       JOIN patrol_task t ON t.id = c.id
                       LEFT JOIN market_entity e ON e.id = c.entity_id
                       CROSS JOIN LATERAL (
                           SELECT t.id, t.type, t.status, t.entity_id, t.lead_id,
                                  CASE WHEN e.id IS NOT NULL THEN (
                                      SELECT row_to_json(s) FROM (
                                          SELECT e.id, e.uscc, e.name, e.registered_address,
                                                 e.business_address) s)
                                  END AS entity,
                                  t.due_on, t.due_approximate,
                                  {overdue} AS overdue, t.status_reason,
                                  c.distance_m, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
                                  t.version
                       ) r
                   ), '[]')::text;
        END $$;
        COMMENT ON FUNCTION gp_near_me({signature}) IS {comment};
        """


OLD_SIGNATURE = "p_worker integer, p_lon float8, p_lat float8, p_offset integer, p_limit integer"
NEW_SIGNATURE = OLD_SIGNATURE + ", p_today date"
COMMENT = (
    "'A worker''s tasks in hand nearest first (metres on the ellipsoid from a CGCS2000 "
    "point; tasks without a point last, then by due date and id): their number and one "
    "page of task summaries (mobile_api.tasks.NearTaskSchema) as a JSON array.'"
)


def upgrade() -> None:
    op.execute("DROP FUNCTION gp_near_me(integer, float8, float8, integer, integer)")
    op.execute(
        _near_me(
            NEW_SIGNATURE,
            # p_today: today in the business time zone, from the app's clock (never
            # CURRENT_DATE, which is the database session's date)
            "t.due_on < p_today",
            COMMENT[:-1] + " Overdue: due before p_today, the business date of today.'",
            check="""
            IF p_today IS NULL THEN
                RAISE EXCEPTION 'gp_near_me: p_today (today''s business date) is required';
            END IF;""",
        )
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION gp_near_me(integer, float8, float8, integer, integer, date)")
    op.execute(_near_me(OLD_SIGNATURE, "t.due_on < CURRENT_DATE", COMMENT))
