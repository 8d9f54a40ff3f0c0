"""Deterministic synthetic Dongguan: city outline, 32 towns, ~590 communities, ~2,900 grid cells.

The city is built in the metric plane EPSG:4547 (CGCS2000 / 3-degree Gauss-Kruger CM 114E):

1. the outline is the morphologically closed union of discs around the real town locations,
   domain-warped by seeded smooth noise and sized (bisection on the disc radius) to 2,460 km²;
2. ``n_cells`` well-spread seeded points (jittered grid + Lloyd relaxation) generate a Voronoi
   diagram; its edges and the outline are noded together once and polygonized, so that every
   face shares its edges vertex-for-vertex with its neighbours;
3. faces go back to lon/lat (EPSG:4490) and are snapped to a 1e-7° grid *before* any union;
4. each cell belongs to the town with the nearest seed, cells are clustered into communities by
   seeded k-means inside each town (contiguity and a 2-cell minimum are then enforced), and
   community = union of its cells, town = union of its communities, outline = union of towns.

All outputs are valid ``MultiPolygon`` geometries with x=lon, y=lat.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

__all__ = [
    "BBOX",
    "CITY_CODE",
    "CITY_NAME",
    "GRID_SIZE",
    "METRIC_EPSG",
    "SRID",
    "TARGET_AREA_M2",
    "TOWNS",
    "Area",
    "DemoCity",
    "build_demo_city",
]

CITY_CODE = "441900"
CITY_NAME = "东莞市"
#: Storage CRS of every output geometry (CGCS2000 geographic, x=lon, y=lat).
SRID = 4490
#: Metric working plane: CGCS2000 / 3-degree Gauss-Kruger CM 114E.
METRIC_EPSG = 4547
#: Coordinate snapping grid in degrees (≈ 1 cm).
GRID_SIZE = 1e-7
#: Target outline area (Dongguan: ≈ 2,460 km²).
TARGET_AREA_M2 = 2_460e6
#: (min lon, min lat, max lon, max lat) that the city must fit in.
BBOX = (113.5, 22.6, 114.3, 23.2)

#: (code, name, lon, lat) of the 32 towns / sub-districts (镇街), ordered by code.
TOWNS: tuple[tuple[str, str, float, float], ...] = (
    ("441900003", "东城街道", 113.78, 23.01),
    ("441900004", "南城街道", 113.73, 23.00),
    ("441900005", "万江街道", 113.72, 23.05),
    ("441900006", "莞城街道", 113.75, 23.04),
    ("441900101", "石碣镇", 113.80, 23.10),
    ("441900102", "石龙镇", 113.85, 23.11),
    ("441900103", "茶山镇", 113.88, 23.07),
    ("441900104", "石排镇", 113.95, 23.09),
    ("441900105", "企石镇", 114.03, 23.07),
    ("441900106", "横沥镇", 114.00, 23.05),
    ("441900107", "桥头镇", 114.09, 23.02),
    ("441900108", "谢岗镇", 114.14, 22.96),
    ("441900109", "东坑镇", 113.95, 23.00),
    ("441900110", "常平镇", 114.00, 23.00),
    ("441900111", "寮步镇", 113.88, 22.99),
    ("441900112", "樟木头镇", 114.07, 22.91),
    ("441900113", "大朗镇", 113.94, 22.95),
    ("441900114", "黄江镇", 113.99, 22.88),
    ("441900115", "清溪镇", 114.16, 22.84),
    ("441900116", "塘厦镇", 114.07, 22.80),
    ("441900117", "凤岗镇", 114.14, 22.74),
    ("441900118", "大岭山镇", 113.84, 22.90),
    ("441900119", "长安镇", 113.80, 22.81),
    ("441900121", "虎门镇", 113.67, 22.82),
    ("441900122", "厚街镇", 113.67, 22.94),
    ("441900123", "沙田镇", 113.61, 22.91),
    ("441900124", "道滘镇", 113.67, 23.00),
    ("441900125", "洪梅镇", 113.61, 23.00),
    ("441900126", "麻涌镇", 113.58, 23.05),
    ("441900127", "望牛墩镇", 113.65, 23.06),
    ("441900128", "中堂镇", 113.66, 23.09),
    ("441900129", "高埗镇", 113.74, 23.08),
)

_MIN_COMMUNITIES_PER_TOWN = 3
_MIN_CELLS_PER_COMMUNITY = 2
_LLOYD_ITERATIONS = 3
_SEED_MARGIN_M = 2_500.0  # every town seed stays at least this far inside the outline
_CLOSING_M = 15_000.0  # morphological closing radius that fills bays between towns

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Adjacency = list[dict[int, float]]


@dataclass(frozen=True)
class Area:
    """One administrative area: town (镇街), community (村(社区)) or grid cell (基础网格)."""

    code: str
    name: str
    parent_code: str | None
    geom: MultiPolygon


@dataclass(frozen=True)
class DemoCity:
    """The synthetic city; every list is ordered by code."""

    outline: MultiPolygon
    towns: list[Area]
    communities: list[Area]
    cells: list[Area]


# --------------------------------------------------------------------------- helpers


@lru_cache(maxsize=1)
def _transformers() -> tuple[Transformer, Transformer]:
    """(lon/lat → metric, metric → lon/lat) transformers, always x-then-y."""
    fwd = Transformer.from_crs(SRID, METRIC_EPSG, always_xy=True)
    inv = Transformer.from_crs(METRIC_EPSG, SRID, always_xy=True)
    return fwd, inv


def _to_metric_xy(lonlat: FloatArray) -> FloatArray:
    x, y = _transformers()[0].transform(lonlat[:, 0], lonlat[:, 1])
    return np.column_stack([x, y])


def _to_lonlat_xy(xy: FloatArray) -> FloatArray:
    lon, lat = _transformers()[1].transform(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def _as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """Wrap a (Multi)Polygon, or the polygonal parts of a collection, as a MultiPolygon."""
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    return MultiPolygon(parts)


def _short_name(name: str) -> str:
    """'东城街道' → '东城', '石碣镇' → '石碣'."""
    return name.removesuffix("街道").removesuffix("镇")


# --------------------------------------------------------------------------- outline


def _warp_field(
    rng: np.random.Generator, n_waves: int = 20
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Random smooth displacement field: a sum of plane waves, wavelengths 1.5-60 km."""
    wavelength = np.exp(rng.uniform(math.log(1_500.0), math.log(60_000.0), n_waves))
    heading = rng.uniform(0.0, 2.0 * math.pi, n_waves)
    wavevec = (2.0 * math.pi / wavelength)[:, None] * np.column_stack(
        [np.cos(heading), np.sin(heading)]
    )
    push = rng.uniform(0.0, 2.0 * math.pi, n_waves)
    # Amplitude ∝ wavelength bounds every wave's slope (≤ 0.1), so the warp stays smooth.
    amp = wavelength * rng.uniform(0.008, 0.015, n_waves)
    phase = rng.uniform(0.0, 2.0 * math.pi, n_waves)
    return wavevec, amp[:, None] * np.column_stack([np.cos(push), np.sin(push)]), phase


def _build_outline(seeds: FloatArray, rng: np.random.Generator) -> Polygon:
    """Closed, domain-warped union of discs around the town seeds, of area ``TARGET_AREA_M2``.

    The disc radius is found by bisection; if the warped ring self-intersects or the city leaves
    ``BBOX``, the warp is damped and the fit repeated (deterministically).
    """
    hub = shapely.multipoints(seeds)
    core = hub.buffer(_SEED_MARGIN_M, quad_segs=8)
    wavevec, disp, phase = _warp_field(rng)

    def shape(radius: float, gain: float) -> Polygon:
        base = hub.buffer(radius, quad_segs=8).buffer(_CLOSING_M, quad_segs=8)
        base = base.buffer(-_CLOSING_M, quad_segs=8)
        ring = shapely.get_coordinates(shapely.segmentize(base.exterior, 150.0))[:-1]
        waves = np.sin(ring @ wavevec.T + phase)
        warped = Polygon(ring + gain * waves @ disp)
        if not warped.is_valid:
            return warped
        # Keep every seed safely inside; drop any pocket the union might enclose.
        merged = shapely.union(warped, core)
        parts = sorted(shapely.get_parts(merged), key=lambda g: -g.area)
        return Polygon(parts[0].exterior)

    gain = 1.0
    for _ in range(12):
        lo, hi = 1_000.0, 20_000.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            outline = shape(mid, gain)
            if not outline.is_valid:
                break
            err = outline.area / TARGET_AREA_M2 - 1.0
            if abs(err) < 1e-5:
                break
            lo, hi = (mid, hi) if err < 0 else (lo, mid)
        if outline.is_valid and abs(outline.area / TARGET_AREA_M2 - 1.0) < 1e-3:
            lon, lat = _to_lonlat_xy(shapely.get_coordinates(outline)).T
            margin = 0.005
            if (
                lon.min() >= BBOX[0] + margin
                and lat.min() >= BBOX[1] + margin
                and lon.max() <= BBOX[2] - margin
                and lat.max() <= BBOX[3] - margin
            ):
                return outline
        gain *= 0.7
    raise RuntimeError("could not fit the demo city outline")


# --------------------------------------------------------------------------- cells


def _sample_inside(poly: Polygon, n: int, rng: np.random.Generator) -> FloatArray:
    """``n`` uniform random points strictly inside ``poly``."""
    minx, miny, maxx, maxy = poly.bounds
    out: list[FloatArray] = []
    have = 0
    while have < n:
        pts = rng.uniform((minx, miny), (maxx, maxy), size=(2 * (n - have) + 16, 2))
        pts = pts[shapely.contains_xy(poly, pts[:, 0], pts[:, 1])][: n - have]
        out.append(pts)
        have += len(pts)
    return np.concatenate(out) if out else np.empty((0, 2))


def _initial_points(outline: Polygon, n: int, rng: np.random.Generator) -> FloatArray:
    """Exactly ``n`` jittered-grid points inside ``outline``."""
    spacing = math.sqrt(outline.area / n)
    minx, miny, maxx, maxy = outline.bounds
    off = rng.uniform(0.0, spacing, 2)
    gx, gy = np.meshgrid(
        np.arange(minx - spacing + off[0], maxx + spacing, spacing),
        np.arange(miny - spacing + off[1], maxy + spacing, spacing),
    )
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    pts = pts + rng.uniform(-0.4 * spacing, 0.4 * spacing, pts.shape)
    pts = pts[shapely.contains_xy(outline, pts[:, 0], pts[:, 1])]
    if len(pts) > n:
        pts = pts[np.sort(rng.choice(len(pts), n, replace=False))]
    elif len(pts) < n:
        pts = np.concatenate([pts, _sample_inside(outline, n - len(pts), rng)])
    return pts


def _voronoi(points: FloatArray, outline: Polygon) -> NDArray[np.object_]:
    """Voronoi polygons of ``points`` in input order, covering ``outline``."""
    extent = outline.envelope.buffer(10_000.0, join_style="mitre")
    vor = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=extent, ordered=True)
    cells = shapely.get_parts(vor)
    if len(cells) != len(points):
        raise RuntimeError("Voronoi diagram lost points (duplicate seeds?)")
    return cells


def _lloyd(points: FloatArray, outline: Polygon, iterations: int) -> FloatArray:
    """Move each point to the centroid of its (outline-clipped) Voronoi cell."""
    for _ in range(iterations):
        cells = _voronoi(points, outline)
        inner = shapely.contains_properly(outline, cells)
        clipped = cells.copy()
        clipped[~inner] = shapely.intersection(cells[~inner], outline)
        cent = shapely.get_coordinates(shapely.centroid(clipped))
        outside = ~shapely.contains_xy(outline, cent[:, 0], cent[:, 1])
        if outside.any():
            cent[outside] = shapely.get_coordinates(shapely.point_on_surface(clipped[outside]))
        points = cent
    return points


def _cell_faces(points: FloatArray, outline: Polygon) -> tuple[NDArray[np.object_], IntArray]:
    """Exact faces of the outline-clipped Voronoi diagram and the cell index of each face.

    Voronoi edges and the outline ring are noded together once and polygonized, so neighbouring
    faces share identical vertices.  A cell clipped into several pieces keeps the piece holding
    its generator; other pieces join the neighbour with which they share the longest edge.
    """
    cells = _voronoi(points, outline)
    lines = np.concatenate([shapely.get_parts(shapely.boundary(cells)), [outline.exterior]])
    noded = shapely.union_all(lines)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    reps = shapely.point_on_surface(faces)
    shapely.prepare(outline)
    faces = faces[shapely.contains_properly(outline, reps)]
    reps = shapely.point_on_surface(faces)
    tree = shapely.STRtree(shapely.points(points))
    owner = tree.query_nearest(reps, all_matches=False)[1].astype(np.int64)

    by_cell: dict[int, list[int]] = defaultdict(list)
    for f, c in enumerate(owner.tolist()):
        by_cell[c].append(f)
    if len(by_cell) != len(points):
        raise RuntimeError("a demo cell has no face inside the outline")
    extras: list[int] = []
    for c, fs in by_cell.items():
        if len(fs) > 1:
            x, y = points[c]
            main = max(fs, key=lambda f: (shapely.contains_xy(faces[f], x, y), faces[f].area, -f))
            extras.extend(f for f in fs if f != main)
    if extras:
        face_tree = shapely.STRtree(faces)
        for f in sorted(extras, key=lambda f: (-faces[f].area, f)):
            best, best_len = -1, 0.0
            for g in sorted(face_tree.query(faces[f], predicate="intersects").tolist()):
                if owner[g] == owner[f]:
                    continue
                shared = shapely.intersection(faces[f].exterior, faces[g].exterior).length
                if shared > best_len:
                    best, best_len = int(owner[g]), shared
            if best >= 0:
                owner[f] = best
    return faces, owner


def _snap_cells(faces: NDArray[np.object_], owner: IntArray, n: int) -> list[MultiPolygon]:
    """Faces → lon/lat, snapped to ``GRID_SIZE``, merged per cell."""
    ll = shapely.transform(faces, _to_lonlat_xy)
    ll = shapely.set_precision(ll, GRID_SIZE)
    groups: list[list[int]] = [[] for _ in range(n)]
    for f, c in enumerate(owner.tolist()):
        if not ll[f].is_empty:
            groups[c].append(f)
    cells: list[MultiPolygon] = []
    for fs in groups:
        if not fs:
            raise RuntimeError("a demo cell collapsed when snapped to the coordinate grid")
        geom = ll[fs[0]] if len(fs) == 1 else shapely.union_all(ll[fs], grid_size=GRID_SIZE)
        cells.append(_as_multipolygon(geom))
    return cells


# --------------------------------------------------------------------------- graph utilities


def _adjacency(cells: Sequence[MultiPolygon]) -> Adjacency:
    """Cells sharing at least one identical ring edge, weighted by shared length (degrees)."""
    polys, poly_owner = shapely.get_parts(np.asarray(cells, dtype=object), return_index=True)
    rings, ring_poly = shapely.get_rings(polys, return_index=True)
    coords, ring_idx = shapely.get_coordinates(rings, return_index=True)
    owner = poly_owner[ring_poly][ring_idx]
    q = np.rint(coords / GRID_SIZE).astype(np.int64)
    key = q[:, 0] * (1 << 31) + q[:, 1]
    same = ring_idx[:-1] == ring_idx[1:]
    a, b = key[:-1][same], key[1:][same]
    seg_owner = owner[:-1][same]
    seglen = np.hypot(*(coords[1:][same] - coords[:-1][same]).T)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((seg_owner, hi, lo))
    lo, hi, seg_owner, seglen = lo[order], hi[order], seg_owner[order], seglen[order]
    adj: Adjacency = [{} for _ in cells]
    pair = (lo[:-1] == lo[1:]) & (hi[:-1] == hi[1:]) & (seg_owner[:-1] != seg_owner[1:])
    for i in np.flatnonzero(pair).tolist():
        u, v, w = int(seg_owner[i]), int(seg_owner[i + 1]), float(seglen[i])
        adj[u][v] = adj[u].get(v, 0.0) + w
        adj[v][u] = adj[v].get(u, 0.0) + w
    return adj


def _components(nodes: Iterable[int], adj: Adjacency) -> list[list[int]]:
    """Connected components of the sub-graph induced by ``nodes`` (each sorted, largest first)."""
    todo = set(nodes)
    comps: list[list[int]] = []
    for start in sorted(todo):
        if start not in todo:
            continue
        todo.discard(start)
        comp, queue = [start], deque([start])
        while queue:
            for nb in adj[queue.popleft()]:
                if nb in todo:
                    todo.discard(nb)
                    comp.append(nb)
                    queue.append(nb)
        comps.append(sorted(comp))
    comps.sort(key=lambda c: (-len(c), c[0]))
    return comps


def _make_contiguous(labels: IntArray, members: Sequence[int], adj: Adjacency) -> None:
    """Hand detached pieces of each label (within ``members``) to their best-connected neighbour.

    Every move strictly lowers the total number of (label, component) pairs, so this ends.
    """
    inside = set(members)
    changed = True
    while changed:
        changed = False
        by_label: dict[int, list[int]] = defaultdict(list)
        for m in members:
            by_label[int(labels[m])].append(m)
        for lab in sorted(by_label):
            comps = _components(by_label[lab], adj)
            for comp in comps[1:]:
                weight: dict[int, float] = defaultdict(float)
                for c in comp:
                    for nb, w in adj[c].items():
                        if nb in inside and labels[nb] != lab:
                            weight[int(labels[nb])] += w
                if weight:
                    labels[comp] = max(weight, key=lambda k: (weight[k], -k))
                    changed = True
            if changed:
                break


def _bisect_tree(ms: Sequence[int], adj: Adjacency) -> list[int] | None:
    """A connected part of the connected cell set ``ms`` whose complement is connected too.

    Cuts the most balanced edge of a BFS spanning tree with both sides at least the minimum
    community size; ``None`` if no such edge exists.
    """
    inside = set(ms)
    root = min(ms)
    parent, order = {root: root}, [root]
    for v in order:
        for nb in sorted(adj[v]):
            if nb in inside and nb not in parent:
                parent[nb] = v
                order.append(nb)
    if len(order) != len(ms):
        return None
    size = dict.fromkeys(order, 1)
    for v in reversed(order[1:]):
        size[parent[v]] += size[v]
    n, lo = len(ms), _MIN_CELLS_PER_COMMUNITY
    cuts = [v for v in order[1:] if lo <= size[v] <= n - lo]
    if not cuts:
        return None
    cut = min(cuts, key=lambda v: (abs(2 * size[v] - n), v))
    children: dict[int, list[int]] = defaultdict(list)
    for v in order[1:]:
        children[parent[v]].append(v)
    part, stack = [], [cut]
    while stack:
        v = stack.pop()
        part.append(v)
        stack.extend(children[v])
    return sorted(part)


def _enforce_min_size(labels: IntArray, members: Sequence[int], adj: Adjacency) -> None:
    """Give every (connected) community of one town at least the minimum number of cells.

    A community below the minimum first tries to take an adjacent cell from a neighbour that
    stays connected and large enough; otherwise it is merged into its best-connected neighbour
    and the largest community of the town is split in two along a spanning-tree edge.
    """
    inside = set(members)
    while True:
        by_label: dict[int, list[int]] = defaultdict(list)
        for m in members:
            by_label[int(labels[m])].append(m)
        small = sorted(lab for lab, ms in by_label.items() if len(ms) < _MIN_CELLS_PER_COMMUNITY)
        if not small:
            return
        lab = small[0]
        best: tuple[float, int] | None = None
        weight: dict[int, float] = defaultdict(float)
        for c in by_label[lab]:
            for nb, w in adj[c].items():
                donor = int(labels[nb])
                if nb not in inside or donor == lab:
                    continue
                weight[donor] += w
                rest = [m for m in by_label[donor] if m != nb]
                if len(rest) < _MIN_CELLS_PER_COMMUNITY or len(_components(rest, adj)) != 1:
                    continue
                if best is None or (w, -nb) > (best[0], -best[1]):
                    best = (w, nb)
        if best is not None:
            labels[best[1]] = lab
            continue
        if not weight:
            raise RuntimeError("a demo community has no neighbour inside its town")
        host = max(weight, key=lambda k: (weight[k], -k))
        labels[by_label[lab]] = host
        by_label[host].extend(by_label.pop(lab))
        for big in sorted(by_label, key=lambda k: (-len(by_label[k]), k)):
            part = _bisect_tree(by_label[big], adj)
            if part is not None:
                labels[part] = lab
                break
        else:
            raise RuntimeError("cannot give every demo community the minimum number of cells")


# --------------------------------------------------------------------------- clustering


def _kmeans(pts: FloatArray, k: int, rng: np.random.Generator, iters: int = 60) -> IntArray:
    """Seeded k-means (k-means++ initialisation); never leaves a cluster empty."""
    n = len(pts)
    centres = np.empty((k, 2))
    centres[0] = pts[rng.integers(n)]
    d2 = ((pts - centres[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        total = d2.sum()
        idx = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres[j] = pts[idx]
        d2 = np.minimum(d2, ((pts - centres[j]) ** 2).sum(axis=1))
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        dist = ((pts[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = dist.argmin(axis=1)
        counts = np.bincount(labels, minlength=k)
        for j in np.flatnonzero(counts == 0).tolist():
            far = int(dist[np.arange(n), labels].argmax())
            labels[far] = j
            dist[far, :] = 0.0
        new = np.array([pts[labels == j].mean(axis=0) for j in range(k)])
        if np.allclose(new, centres, rtol=0.0, atol=1e-3):
            break
        centres = new
    return labels


def _allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Communities per town: proportional to cell count, ≥ 3, ≤ cells // 2, summing to total."""
    n_all = sum(sizes)
    quota = [s * total / n_all for s in sizes]
    cap = [s // _MIN_CELLS_PER_COMMUNITY for s in sizes]
    alloc = [
        min(c, max(_MIN_COMMUNITIES_PER_TOWN, math.floor(q)))
        for q, c in zip(quota, cap, strict=True)
    ]
    for (code, name, _, _), a, size in zip(TOWNS, alloc, sizes, strict=True):
        if a < _MIN_COMMUNITIES_PER_TOWN:
            raise ValueError(f"too few cells: {name} ({code}) gets only {size}")
    while sum(alloc) < total:
        open_ = [i for i in range(len(sizes)) if alloc[i] < cap[i]]
        if not open_:
            raise RuntimeError("not enough cells for the requested number of communities")
        i = max(open_, key=lambda i: (quota[i] - alloc[i], -i))
        alloc[i] += 1
    while sum(alloc) > total:
        open_ = [i for i in range(len(sizes)) if alloc[i] > _MIN_COMMUNITIES_PER_TOWN]
        if not open_:
            raise RuntimeError("too few communities requested for the number of towns")
        i = min(open_, key=lambda i: (quota[i] - alloc[i], i))
        alloc[i] -= 1
    return alloc


# --------------------------------------------------------------------------- public API


def build_demo_city(
    seed: int = 20171109, n_cells: int = 2900, n_communities: int = 590
) -> DemoCity:
    """Build the seeded synthetic Dongguan; the same arguments give byte-identical geometries.

    ``seed`` must be non-negative.  Towns get ``parent_code=None`` (their parent is the city,
    ``CITY_CODE``).  Raises ``ValueError`` if there are too few communities for 3 per town or
    too few cells for 2 per community.
    """
    if seed < 0:
        raise ValueError("seed must be non-negative")
    if n_communities < _MIN_COMMUNITIES_PER_TOWN * len(TOWNS):
        raise ValueError(f"n_communities must be at least {_MIN_COMMUNITIES_PER_TOWN * len(TOWNS)}")
    if n_cells < _MIN_CELLS_PER_COMMUNITY * n_communities:
        raise ValueError("n_cells must be at least twice n_communities")
    rng = np.random.default_rng(seed)
    town_ll = np.array([(lon, lat) for _, _, lon, lat in TOWNS])
    town_xy = _to_metric_xy(town_ll)

    outline = _build_outline(town_xy, rng)
    points = _lloyd(_initial_points(outline, n_cells, rng), outline, _LLOYD_ITERATIONS)
    faces, owner = _cell_faces(points, outline)
    cell_geoms = _snap_cells(faces, owner, n_cells)
    adj = _adjacency(cell_geoms)

    # Towns: nearest town seed, then contiguity.
    d2 = ((points[:, None, :] - town_xy[None, :, :]) ** 2).sum(axis=2)
    town_of = d2.argmin(axis=1).astype(np.int64)
    _make_contiguous(town_of, range(n_cells), adj)
    town_members = [np.flatnonzero(town_of == t).tolist() for t in range(len(TOWNS))]
    alloc = _allocate([len(m) for m in town_members], n_communities)

    towns: list[Area] = []
    communities: list[Area] = []
    cells: list[Area] = []
    for t, (tcode, tname, _, _) in enumerate(TOWNS):
        members = town_members[t]
        labels = np.full(n_cells, -1, dtype=np.int64)
        labels[members] = _kmeans(points[members], alloc[t], np.random.default_rng([seed, t]))
        _make_contiguous(labels, members, adj)
        _enforce_min_size(labels, members, adj)

        groups: dict[int, list[int]] = defaultdict(list)
        for m in members:
            groups[int(labels[m])].append(m)

        def centre_dist(ms: list[int], t: int = t) -> tuple[float, int]:
            return (float(np.hypot(*(points[ms].mean(axis=0) - town_xy[t]))), ms[0])

        short = _short_name(tname)
        comm_geoms: list[MultiPolygon] = []
        for ci, ms in enumerate(sorted(groups.values(), key=centre_dist), start=1):
            ccode, cname = f"{tcode}{ci:03d}", f"{short}第{ci}社区"
            ordered = sorted(ms, key=lambda m: (-points[m, 1], points[m, 0]))
            for gi, m in enumerate(ordered, start=1):
                cells.append(Area(f"{ccode}{gi:03d}", f"{cname}第{gi}网格", ccode, cell_geoms[m]))
            geom = _as_multipolygon(
                shapely.union_all([cell_geoms[m] for m in ms], grid_size=GRID_SIZE)
            )
            comm_geoms.append(geom)
            communities.append(Area(ccode, cname, tcode, geom))
        town_geom = _as_multipolygon(shapely.union_all(comm_geoms, grid_size=GRID_SIZE))
        towns.append(Area(tcode, tname, None, town_geom))

    city = _as_multipolygon(shapely.union_all([t.geom for t in towns], grid_size=GRID_SIZE))
    minx, miny, maxx, maxy = city.bounds
    if not (BBOX[0] <= minx and BBOX[1] <= miny and maxx <= BBOX[2] and maxy <= BBOX[3]):
        raise RuntimeError(f"demo city bounds {city.bounds} leave {BBOX}")
    return DemoCity(
        outline=city,
        towns=sorted(towns, key=lambda a: a.code),
        communities=sorted(communities, key=lambda a: a.code),
        cells=sorted(cells, key=lambda a: a.code),
    )
