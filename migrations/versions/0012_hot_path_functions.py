"""The two statements every phone request runs, as PL/pgSQL functions: the principal behind an
access token, and the near-me page with its total.

psycopg2 does not prepare statements, so every call parsed and planned its SQL anew: 0.26 ms of
planning for the principal, 0.3–0.45 ms for the near-me page, on top of their execution (0.04
and ~1 ms). A PL/pgSQL function keeps its plans for the life of the connection; the near-me
function also answers the total in the same call (one round trip instead of two) and builds the
JSON only for the page's rows, a summary of each task (measured with pgbench on 1.5 M entities,
~100 tasks per worker: 2.5 ms → ~1 ms per call; benchmarks/README.md, "phone").

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "('assigned', 'accepted', 'in_progress', 'returned')"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION gp_principal(p_user integer, p_session uuid)
        RETURNS TABLE (id integer, username varchar, role varchar, town_code varchar,
                       community_code varchar, department_code varchar)
        LANGUAGE plpgsql STABLE AS $$
        BEGIN
            RETURN QUERY
            SELECT u.id, u.username, u.role, u.town_code, u.community_code, u.department_code
            FROM auth_session s JOIN app_user u ON u.id = s.user_id
            WHERE s.id = p_session AND s.user_id = p_user AND s.revoked_at IS NULL
              AND s.expires_at > now() AND u.is_active;
        END $$;
        COMMENT ON FUNCTION gp_principal(integer, uuid) IS
            'The account behind a live session (none: logged out, revoked, expired, disabled).';
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION gp_near_me(p_worker integer, p_lon float8, p_lat float8,
                                   p_offset integer, p_limit integer)
        RETURNS TABLE (total bigint, page text)
        LANGUAGE plpgsql STABLE AS $$
        DECLARE
            here geography := CASE WHEN p_lon IS NOT NULL AND p_lat IS NOT NULL
                THEN ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4490)::geography END;
        BEGIN
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
                                  t.due_on < CURRENT_DATE AS overdue, t.status_reason,
                                  c.distance_m, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
                                  t.version
                       ) r
                   ), '[]')::text;
        END $$;
        COMMENT ON FUNCTION gp_near_me(integer, float8, float8, integer, integer) IS
            'A worker''s tasks in hand nearest first (metres on the ellipsoid from a CGCS2000 '
            'point; tasks without a point last, then by due date and id): their number and one '
            'page of task summaries (mobile_api.tasks.NearTaskSchema) as a JSON array.';
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS gp_near_me(integer, float8, float8, integer, integer)")
    op.execute("DROP FUNCTION IF EXISTS gp_principal(integer, uuid)")
