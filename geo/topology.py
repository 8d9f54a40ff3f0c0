"""Topology QA as set-based PostGIS SQL over two relations the caller prepares:

    qa_subject(code text, parent_code text, geom geometry(MultiPolygon,4490), focus boolean)
    qa_parent(code text, geom geometry(MultiPolygon,4490))

`qa_subject` holds the geometries of one level *after* repair by ST_MakeValid (relational
operators need valid input); `focus` marks the rows a check is about (the features of an import,
or every row for a full QA run), so an import is judged only on what it changes. Areas are in m²
by gp_area_m2 (migration 0001: polygons as drawn in lon/lat, measured on the ellipsoid).
Bind parameters: :tol (m², noise floor), :sliver (m²), :limit (maximum rows per list),
:all_parents (check every parent, not only those of focus rows: a full QA run reports a parent
with no children at all as one big gap).
"""

from __future__ import annotations

# Pairs of features whose interiors overlap by at least :tol m².
OVERLAPS = """
SELECT a.code AS code_a, b.code AS code_b,
       round(gp_area_m2(x.g)::numeric, 2)::float AS area_m2,
       ST_AsGeoJSON(ST_PointOnSurface(x.g), 7)::json AS location,
       ST_AsGeoJSON(x.g, 7)::json AS geometry
FROM qa_subject a
JOIN qa_subject b ON a.code < b.code AND a.geom && b.geom AND (a.focus OR b.focus)
CROSS JOIN LATERAL (
    SELECT ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 3) AS g
) x
WHERE ST_Intersects(a.geom, b.geom) AND NOT ST_IsEmpty(x.g)
  AND gp_area_m2(x.g) >= :tol
ORDER BY area_m2 DESC, code_a, code_b
LIMIT :limit
"""

# Parts of a parent not covered by any feature. Without a parent row (e.g. towns imported before
# the city outline) the outline is the union of the features with its holes filled.
GAPS = """
WITH parents AS (
    SELECT p.code, p.geom FROM qa_parent p
    WHERE :all_parents
       OR EXISTS (SELECT 1 FROM qa_subject s WHERE s.focus AND s.parent_code = p.code)
    UNION ALL
    SELECT NULL, ST_Multi(ST_Union(ST_MakePolygon(ST_ExteriorRing(d.geom))))
    FROM (SELECT (ST_Dump(ST_Union(geom))).geom FROM qa_subject) d
    WHERE NOT EXISTS (SELECT 1 FROM qa_parent)
),
cover AS (
    SELECT p.code, ST_Union(s.geom) AS g
    FROM parents p JOIN qa_subject s ON s.geom && p.geom AND ST_Intersects(s.geom, p.geom)
    GROUP BY p.code
)
SELECT p.code AS parent_code,
       round(gp_area_m2(d.geom)::numeric, 2)::float AS area_m2,
       ST_AsGeoJSON(ST_PointOnSurface(d.geom), 7)::json AS location,
       ST_AsGeoJSON(d.geom, 7)::json AS geometry
FROM parents p
LEFT JOIN cover c ON c.code IS NOT DISTINCT FROM p.code
CROSS JOIN LATERAL ST_Dump(
    CASE WHEN c.g IS NULL THEN p.geom ELSE ST_Difference(p.geom, c.g) END
) d
WHERE ST_Dimension(d.geom) = 2 AND gp_area_m2(d.geom) >= :tol
ORDER BY area_m2 DESC
LIMIT :limit
"""

# Features reaching outside their own parent by at least :tol m².
OUTSIDE_PARENT = """
SELECT s.code, s.parent_code,
       round(gp_area_m2(x.g)::numeric, 2)::float AS area_m2,
       ST_AsGeoJSON(ST_PointOnSurface(x.g), 7)::json AS location
FROM qa_subject s
JOIN qa_parent p ON p.code = s.parent_code
CROSS JOIN LATERAL (
    SELECT ST_CollectionExtract(ST_Difference(s.geom, p.geom), 3) AS g
) x
WHERE s.focus AND NOT ST_CoveredBy(s.geom, p.geom) AND NOT ST_IsEmpty(x.g)
  AND gp_area_m2(x.g) >= :tol
ORDER BY area_m2 DESC
LIMIT :limit
"""

# Polygon parts smaller than :sliver m² (a cell that is mostly a thin shard, or a stray speck).
SLIVERS = """
SELECT s.code, d.path[1] AS part,
       round(gp_area_m2(d.geom)::numeric, 2)::float AS area_m2,
       ST_AsGeoJSON(ST_PointOnSurface(d.geom), 7)::json AS location
FROM qa_subject s CROSS JOIN LATERAL ST_Dump(s.geom) d
WHERE s.focus AND gp_area_m2(d.geom) < :sliver
ORDER BY area_m2
LIMIT :limit
"""

# Repair step 1: cut each overlap out of the feature with the larger code, so the one with the
# smaller code keeps it (deterministic, and stable when the same file is imported twice).
CUT_OVERLAPS = """
UPDATE qa_subject t
SET geom = ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_Difference(t.geom, o.g)), 3))
FROM (
    SELECT b.code, ST_Union(a.geom) AS g
    FROM qa_subject a JOIN qa_subject b
      ON a.code < b.code AND a.geom && b.geom AND ST_Intersects(a.geom, b.geom)
    WHERE b.focus
      AND gp_area_m2(ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 3)) > 0
    GROUP BY b.code
) o
WHERE t.code = o.code
RETURNING t.code
"""

# Repair step 2: give each gap inside a parent to the focus feature of that parent sharing the
# longest border with it (a gap no such feature borders stays, and keeps the import rejected).
FILL_GAPS = """
WITH parents AS (
    SELECT p.code, p.geom FROM qa_parent p
    WHERE EXISTS (SELECT 1 FROM qa_subject s WHERE s.focus AND s.parent_code = p.code)
),
cover AS (
    SELECT p.code, ST_Union(s.geom) AS g
    FROM parents p JOIN qa_subject s ON s.geom && p.geom AND ST_Intersects(s.geom, p.geom)
    GROUP BY p.code
),
gaps AS (
    SELECT row_number() OVER () AS gid, p.code AS parent_code, d.geom
    FROM parents p JOIN cover c ON c.code = p.code
    CROSS JOIN LATERAL ST_Dump(ST_Difference(p.geom, c.g)) d
    WHERE ST_Dimension(d.geom) = 2
),
winner AS (
    SELECT DISTINCT ON (g.gid) g.geom AS gap, s.code
    FROM gaps g JOIN qa_subject s
      ON s.focus AND s.parent_code = g.parent_code AND s.geom && g.geom
     AND ST_Intersects(s.geom, g.geom)
    ORDER BY g.gid, ST_Length(ST_Intersection(ST_Boundary(g.geom), s.geom)::geography) DESC,
             s.code
)
UPDATE qa_subject t
SET geom = ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_Union(t.geom, w.g)), 3))
FROM (SELECT code, ST_Union(gap) AS g FROM winner GROUP BY code) w
WHERE t.code = w.code
RETURNING t.code
"""
